"""Request and response bodies of /v1/api_keys.

`ApiKey` is the key resource built by `commands.api_keys.api_key_payload`: never its secret.
`ApiKeyWithSecret` is answered once, when a key is made or rolled: the only time the secret is
shown (the database keeps its hash).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from api.schemas.lists import ListPage
from api.schemas.text import Exact, ExactFields, not_blank
from commands.api_keys import ROLL_EXPIRY_MAX
from domain import api_versions
from domain.rate_limits import MAX_REQUESTS, MAX_WINDOW_SECONDS
from domain.scopes import Scope


class RateLimitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: StrictInt = Field(ge=1, le=MAX_REQUESTS,
                                description="Bucket size: the burst the key may send at once.")
    window_seconds: StrictInt = Field(ge=1, le=MAX_WINDOW_SECONDS,
                                      description="Seconds in which an empty bucket refills.")


# A served API version (domain/api_versions.py); the command refuses one no longer served (422).
ApiVersionName = Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                                      json_schema_extra={"enum": list(api_versions.VERSIONS)})]

RATE_LIMITS = ('Operator keys only. Per bucket: "*" for the key as a whole, or a scope name '
               "for the requests needing that scope; unset buckets use the configured limits.")


class ApiKeyCreate(ExactFields):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100, pattern=not_blank(),
                      examples=["checkout service"])
    role: Literal["partner", "operator"] | None = Field(
        None, description="Operator keys only make operator keys; default: partner when "
                          "partner_id is given (partner keys always make partner keys).")
    partner_id: Exact | None = Field(None, min_length=1, max_length=64,
                                     pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                                     description="The partner of a partner key (a partner key "
                                                 "may omit it: its own).")
    scopes: list[Scope] | None = Field(
        None, max_length=32, description="Default: a partner key's own scopes; the role's "
                                         "default scopes for operator keys.",
        examples=[["players:read", "deposits:write"]])
    rate_limits: dict[str, RateLimitIn] | None = Field(
        None, max_length=32, description=RATE_LIMITS,
        json_schema_extra={"propertyNames": {"enum": ["*", *sorted(map(str, Scope))]}},
        examples=[{"*": {"requests": 50, "window_seconds": 1}}])
    api_version: ApiVersionName | None = Field(
        None, description="The API version the key's requests are served under when they send "
                          "no Settlepay-Version header. Default: the current version.")


class ApiKeyRoll(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires_in_seconds: StrictInt = Field(
        86_400, ge=0, le=int(ROLL_EXPIRY_MAX.total_seconds()),
        description="How long the old key keeps working (0: it stops at once; at most a week).")
    api_version: ApiVersionName | None = Field(
        None, description="The API version the new key is pinned to (how a partner moves to a "
                          "new version). Default: the old key's.")


class RateLimitOut(BaseModel):
    requests: int
    window_seconds: int


class ApiKey(BaseModel):
    object: Literal["api_key"] = "api_key"
    id: str
    prefix: str = Field(description="The key's first characters: names it in logs and UIs.")
    name: str
    role: Literal["partner", "operator"]
    partner_id: str | None
    scopes: list[str]
    status: Literal["active", "expired", "revoked"]
    rate_limits: dict[str, RateLimitOut]
    api_version: str = Field(description="The API version its requests are served under when "
                                         "they send no Settlepay-Version header.")
    created_at: datetime
    created_by: str | None = Field(description="The actor that made it (api_key:<id>, cli:...).")
    expires_at: datetime | None = Field(description="Set when the key was rolled.")
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="Last authenticated request (recorded at "
                                                      "most once a minute per API process).")
    rolled_from: str | None = Field(description="The key this one replaced.")


class ApiKeyWithSecret(ApiKey):
    secret: str = Field(description="The key itself. Shown this once: store it now.")


class ApiKeyList(ListPage[ApiKey]):
    """A page of API keys, newest first."""
