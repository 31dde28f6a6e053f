"""The geolocation provider contract: device fix + IP address in, facts out.

A provider reports facts (`domain.geo.LocationFacts`: the jurisdiction holding the device, the
distance to its border, the IP's country and anonymity flags); it never decides whether the
player may play. `domain.geo.decide` does, with the licensed jurisdictions from configuration,
so swapping the offline provider for a vendor (GeoComply, ...) changes no rule.
Providers raise `GeolocationUnavailable` for transient faults (the caller retries or answers 503).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from domain.geo import LocationFacts


@dataclass(frozen=True)
class LocationRequest:
    latitude: float      # WGS84 degrees from the device (GPS / OS location services)
    longitude: float
    ip_address: str      # the address the player's device connects from


class GeolocationUnavailable(Exception):
    """The provider could not answer now; try again."""


class GeolocationProvider(Protocol):
    name: str

    def locate(self, request: LocationRequest) -> LocationFacts: ...
