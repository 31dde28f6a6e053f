"""Request and response bodies of the KYC routes (api/routes/kyc.py).

The operator's decision body is shared with withdrawals (api/schemas/review.py); a case's
status and history are the player resource's `kyc` section (api/schemas/players.py), here with
the player id as the answer to a KYC request.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.players import KycStatus
from api.schemas.text import Exact, ExactFields


class DocumentIn(ExactFields):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    type: Literal["passport", "driving_licence", "id_card"]
    number: Exact = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9-]+$")
    country: Exact = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")


class KycStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document: DocumentIn


class KycCase(KycStatus):
    """A player's KYC case: its status, the reason of its last step, and its history."""

    object: Literal["kyc"] = "kyc"
    player_id: str


class WebhookReceipt(BaseModel):
    """What the provider is told: received (2xx, never redelivered) and what became of it."""

    received: Literal[True] = True
    outcome: Literal["signalled", "workflow_closed", "unknown_reference"] = Field(
        description="signalled: delivered to the run that sent the document; workflow_closed: "
                    "that run has ended (a late or earlier run's verdict, ignored); "
                    "unknown_reference: not a KYC document of ours.")
