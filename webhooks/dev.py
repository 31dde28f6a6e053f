"""The dev stack's webhook endpoint: partner `demo` (the partner of the README's first curl)
delivers every event to the receiver sandbox, which verifies each signature, so a newcomer sees
deliveries arrive at http://127.0.0.1:12114/_sandbox/deliveries.

Made once (the same endpoint on every later `make dev`); its secret is handed to the receiver
at each start, since the sandbox keeps everything in memory. Development only.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlalchemy import Connection

from commands import webhooks as commands
from settlepay.config import Settings
from settlepay.db import make_engine, run_in_transaction
from store import webhooks as store

DEV_PARTNER = "demo"
RECEIVER_NAME = "dev"
LOOPBACK = ["127.0.0.1/32"]


def ensure_dev_endpoint(database_url: str, settings: Settings, receiver_base: str) -> str:
    """The development partner's endpoint URL (made if missing), its secret registered with
    the receiver sandbox at `receiver_base`."""
    url = f"{receiver_base}/hooks/{RECEIVER_NAME}"
    dev_settings = settings.model_copy(update={
        "database_url": database_url,
        "webhooks_allowed_networks": settings.webhooks_allowed_networks or LOOPBACK})
    engine = make_engine(dev_settings.sqlalchemy_url, pool_size=1, settings=dev_settings)
    try:
        def work(conn: Connection) -> str:
            for row in store.list_endpoints(conn, partner_id=DEV_PARTNER):
                if row["url"] == url:
                    return commands.endpoint_secret(dev_settings, row)
            _, secret = commands.create_endpoint(
                conn, dev_settings, partner_id=DEV_PARTNER,
                spec=commands.EndpointSpec(url=url, description="settlepay dev: the receiver "
                                                                "sandbox"),
                actor="system:dev", operation_id=f"dev-{RECEIVER_NAME}", now=datetime.now(UTC))
            return secret

        secret = run_in_transaction(engine, work)
    finally:
        engine.dispose()
    httpx.put(f"{receiver_base}/_sandbox/endpoints/{RECEIVER_NAME}", json={"secrets": [secret]},
              timeout=10).raise_for_status()
    return url
