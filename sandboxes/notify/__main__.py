"""`python -m sandboxes.notify --port N`: the notification sandbox on a real port."""

from __future__ import annotations

import argparse

import uvicorn

from sandboxes.notify.app import create_app
from settlepay.config import get_settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandboxes.notify", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=get_settings().sandbox_notify_port)
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
