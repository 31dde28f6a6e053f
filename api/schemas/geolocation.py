"""Request and response bodies of `POST /v1/players/{id}/geolocation`.

The resource is built by `commands.geolocation.check_payload`.
"""

from __future__ import annotations

from datetime import datetime
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictFloat, StrictStr


def _ip(value: str) -> IPv4Address | IPv6Address:
    if "%" in value:        # a scoped IPv6 address (fe80::1%eth0) is no public client address
        raise ValueError("value is not a valid IPv4 or IPv6 address")
    return ip_address(value)


# A JSON string holding an IPv4 or IPv6 address (a number is not an address), as the OpenAPI
# description says with the JSON Schema formats.
IpAddress = Annotated[StrictStr, Field(max_length=45, json_schema_extra={
    "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}), AfterValidator(_ip)]


class GeolocationCheckCreate(BaseModel):
    """Where the device is, and the IP address the player's request came from."""

    model_config = ConfigDict(extra="forbid")

    latitude: StrictFloat = Field(ge=-90, le=90, allow_inf_nan=False)
    longitude: StrictFloat = Field(ge=-180, le=180, allow_inf_nan=False)
    ip_address: IpAddress


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
