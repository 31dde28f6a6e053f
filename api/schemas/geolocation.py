"""Request and response bodies of `POST /v1/players/{id}/geolocation`.

The resource is built by `commands.geolocation.check_payload`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyAddress


class GeolocationCheckCreate(BaseModel):
    """Where the device is, and the IP address the player's request came from."""

    model_config = ConfigDict(extra="forbid")

    latitude: float = Field(ge=-90, le=90, allow_inf_nan=False)
    longitude: float = Field(ge=-180, le=180, allow_inf_nan=False)
    ip_address: IPvAnyAddress


class GeolocationCheck(BaseModel):
    """A location check on record; money moves only while an allowed one is valid."""

    object: Literal["geolocation_check"] = "geolocation_check"
    id: str
    player_id: str
    allowed: bool
    code: str = Field(description="allowed, or why not (e.g. outside_licensed_jurisdiction).")
    reason: str
    jurisdiction: str | None
    distance_to_border_miles: float | None
    latitude: float
    longitude: float
    ip_address: str
    ip_country: str | None
    anonymous_flags: list[str]
    provider: str
    checked_at: datetime
    valid_until: datetime
