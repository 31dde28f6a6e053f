"""`python -m sandboxes.stripe --port N`: serve the Stripe sandbox (webhooks to the settlepay
API)."""

from __future__ import annotations

import argparse

import uvicorn

from sandboxes.stripe.app import create_app
from settlepay.config import get_settings


def main() -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m sandboxes.stripe", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.sandbox_stripe_port)
    parser.add_argument("--webhook-url", default=settings.sandbox_stripe_webhook_url,
                        help="where events are POSTed ('' = nowhere)")
    parser.add_argument("--webhook-secret", default=settings.stripe_webhook_secret)
    parser.add_argument("--enabled-events", default="*",
                        help="comma-separated event types to send, as a Stripe endpoint's "
                             "enabled_events")
    args = parser.parse_args()
    enabled = [e.strip() for e in args.enabled_events.split(",") if e.strip()]
    app = create_app(webhook_url=args.webhook_url or None, webhook_secret=args.webhook_secret,
                     enabled_events=enabled)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
