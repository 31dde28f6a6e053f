# One image for every settlepay process (api, worker, migrate, sandboxes); docker-compose.yml
# picks the command. Production-like: no dev extras, a non-root user, no source mounted.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . /app
RUN pip install . && useradd --system --uid 10001 --home-dir /app settlepay
USER settlepay

EXPOSE 8000
# docker-compose.yml overrides the command per service: `settlepay api`, `settlepay worker`, ...
ENTRYPOINT ["settlepay"]
CMD ["api"]
