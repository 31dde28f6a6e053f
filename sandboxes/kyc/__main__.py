"""`python -m sandboxes.kyc --port N [--webhook-url URL] [--delay S]`: the KYC sandbox."""

from __future__ import annotations

import argparse

import uvicorn

from sandboxes.kyc.app import create_app
from settlepay.config import get_settings


def main() -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m sandboxes.kyc", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.sandbox_kyc_port)
    parser.add_argument("--webhook-url",
                        default=f"http://{settings.api_host}:{settings.api_port}/v1/webhooks/kyc")
    parser.add_argument("--webhook-secret", default=settings.kyc_webhook_secret)
    parser.add_argument("--delay", type=float, default=2.0,
                        help="seconds before the verdict webhook")
    args = parser.parse_args()
    app = create_app(webhook_url=args.webhook_url, webhook_secret=args.webhook_secret,
                     delay_seconds=args.delay)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
