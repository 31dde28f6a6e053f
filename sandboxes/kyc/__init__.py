"""A local KYC provider for development and tests (`python -m sandboxes.kyc --port N`).

POST /v1/checks {reference, person, document} (Idempotency-Key) answers 202 `pending` at once;
after `delay_seconds` the verdict goes to the configured webhook URL, signed with Standard
Webhooks (secret: Settings.kyc_webhook_secret). The document number decides the verdict, like
a payment sandbox's test cards:

    contains "RED-FINAL"  ->  RED, FINAL   (document rejected for good)
    contains "RED-RETRY"  ->  RED, RETRY   (send another document)
    contains "SILENT"     ->  no webhook at all (the check never answers: KYC expiry)
    anything else         ->  GREEN

Controls: POST /_sandbox/config {webhook_url, webhook_secret, delay_seconds},
GET /_sandbox/checks (each with the idempotency key it was created under),
POST /_sandbox/checks/{id}/verdict {result, next, reason} (deliver a verdict now, e.g. a late
answer to a silent check; answers with the delivery attempts and the receiver's answers),
GET /_sandbox/webhooks (delivery attempts). Never for production.
"""

from sandboxes.kyc.app import create_app

__all__ = ["create_app"]
