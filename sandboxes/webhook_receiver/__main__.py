"""`python -m sandboxes.webhook_receiver --port N`: the webhook receiver sandbox on a real port."""

from __future__ import annotations

import argparse

import uvicorn

from sandboxes.webhook_receiver.app import create_app
from settlepay.config import get_settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandboxes.webhook_receiver",
                                     description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=get_settings().sandbox_webhook_receiver_port)
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
