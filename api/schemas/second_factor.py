"""Request and response bodies of the second factor: TOTP enrolment and its confirmation.

The provisioning URI (it carries the secret) is answered once, by the enrolment that made it,
and never kept for Idempotency-Key replay.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.text import Exact, ExactFields

CODE = r"^[0-9]{6}$"


class TotpEnrolmentIn(ExactFields):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    code: Exact | None = Field(None, pattern=CODE,
                               description="A code of the player's current authenticator: required "
                                           "to enrol a new one once a factor is confirmed.")


class TotpEnrolment(BaseModel):
    object: Literal["totp_enrolment"] = "totp_enrolment"
    player_id: str
    state: Literal["pending"] = "pending"
    provisioning_uri: str = Field(description="otpauth:// URI for the authenticator; shown once. "
                                              "Confirm with a first code.")


class TotpConfirmIn(ExactFields):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    code: Exact = Field(pattern=CODE, description="A first code of the new authenticator.")


class SecondFactor(BaseModel):
    object: Literal["second_factor"] = "second_factor"
    player_id: str
    method: Literal["totp"] = "totp"
    state: Literal["confirmed"] = "confirmed"
