"""`python -m webhooks.health`: the dispatcher container's health check.

Healthy (exit 0) when this host's dispatcher swept recently: its sweep loop, which runs every
few seconds and needs the database, touches `webhooks.dispatcher.HEARTBEAT`. Exit 1 otherwise.
"""

from __future__ import annotations

import sys
import time

from webhooks.dispatcher import HEARTBEAT

STALE_AFTER_SECONDS = 30.0


def main() -> int:
    try:
        age = time.time() - HEARTBEAT.stat().st_mtime
    except FileNotFoundError:
        print("no dispatcher heartbeat yet", file=sys.stderr)
        return 1
    if age > STALE_AFTER_SECONDS:
        print(f"dispatcher heartbeat is {age:.0f} s old", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
