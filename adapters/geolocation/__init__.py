"""Geolocation providers: where a player's device is, and what their IP address says.

`interface` is the contract every provider meets; `offline` is the default, built from the US
Census state polygons (`census_states`) and MaxMind databases (`maxmind`), needing no network.
`from_settings(settings)` builds it once per process (loading the polygons takes ~0.5 s).
"""

from __future__ import annotations

from functools import lru_cache

from adapters.geolocation.interface import GeolocationProvider, LocationRequest
from settlepay.config import Settings


def from_settings(settings: Settings) -> GeolocationProvider:
    return _offline(settings.geoip_city_db_path, settings.geoip_anonymous_db_path,
                    tuple(settings.geoip_anonymous_cidrs))


@lru_cache(maxsize=8)
def _offline(city_db: str, anonymous_db: str, cidrs: tuple[str, ...]) -> GeolocationProvider:
    from adapters.geolocation.census_states import us_states
    from adapters.geolocation.maxmind import MaxMindIpIntelligence
    from adapters.geolocation.offline import OfflineGeolocationProvider

    ip = MaxMindIpIntelligence(city_db or None, anonymous_db or None, cidrs)
    return OfflineGeolocationProvider(us_states(), ip)


__all__ = ["GeolocationProvider", "LocationRequest", "from_settings"]
