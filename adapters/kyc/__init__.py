"""KYC provider adapter: submit a document check, verify the provider's signed webhook.

    provider = from_settings(settings)          # HttpKycProvider at settings.kyc_api_base
    check = provider.submit_check(reference=..., person=..., document=..., idempotency_key=...)
    status = provider.get_check(check.id)       # the verdict once decided (a missed webhook)
    verdict = verify_webhook(secret, body, headers)   # raises WebhookSignatureInvalid

The provider answers asynchronously: the check's verdict (GREEN, or RED with RETRY or FINAL)
arrives later as a webhook signed with Standard Webhooks; `get_check` reads it back when the
webhook is late or lost. Must never touch the database.
"""

from adapters.kyc.http import HttpKycProvider
from adapters.kyc.interface import (
    CheckStatus,
    DocumentCheck,
    DocumentVerdict,
    KycProvider,
    KycProviderError,
    KycProviderUnavailable,
    Person,
    SubmittedDocument,
    WebhookSignatureInvalid,
)
from adapters.kyc.webhooks import sign_webhook, verify_webhook
from settlepay.config import Settings

__all__ = ["CheckStatus", "DocumentCheck", "DocumentVerdict", "HttpKycProvider", "KycProvider",
           "KycProviderError", "KycProviderUnavailable", "Person", "SubmittedDocument",
           "WebhookSignatureInvalid", "from_settings", "sign_webhook", "verify_webhook"]


def from_settings(settings: Settings) -> HttpKycProvider:
    return HttpKycProvider(base_url=settings.kyc_api_base)
