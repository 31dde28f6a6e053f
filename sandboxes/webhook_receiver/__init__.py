"""A partner's webhook receiver for development and tests (`python -m sandboxes.webhook_receiver`).

POST /hooks/<name> records the delivery (headers, body, when) and verifies its Standard Webhooks
signature with the reference library (`standardwebhooks`) against the secrets registered for
<name>; it answers what it was told to: PUT /_sandbox/endpoints/<name>
{"secrets": [...], "status": 200, "latency_seconds": 0, "script": [{"status": 500}, ...]}
(`script` answers are used first, one per request, then `status`). GET /_sandbox/deliveries
lists what arrived; POST /_sandbox/release ends every pending latency at once. `make dev` runs
it with an endpoint for the development partner. Must never be used in production.
"""

from sandboxes.webhook_receiver.app import create_app

__all__ = ["create_app"]
