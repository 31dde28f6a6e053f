# One image for every settlepay process (api, worker, migrate, sandboxes); docker-compose.yml
# picks the command. Production-like: no dev extras, a non-root user, no source mounted.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . /app
# Bytecode is compiled at build time (PYTHONDONTWRITEBYTECODE only stops writing it at run time):
# Temporal's workflow sandbox imports the workflow modules afresh for every run, from the .pyc.
RUN pip install . \
    && python -m compileall -q "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && useradd --system --uid 10001 --home-dir /app settlepay \
    && install -d -o settlepay /var/lib/settlepay/anchors
USER settlepay

EXPOSE 8000
# docker-compose.yml overrides the command per service: `settlepay api`, `settlepay worker`, ...
ENTRYPOINT ["settlepay"]
CMD ["api"]
