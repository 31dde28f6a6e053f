"""The default geolocation provider: state polygons + MaxMind IP intelligence, no network.

Good enough for development, tests and a fallback; a regulated launch plugs a certified vendor
in behind the same interface.
"""

from __future__ import annotations

from adapters.geolocation.interface import LocationRequest
from adapters.geolocation.maxmind import MaxMindIpIntelligence
from domain.geo import LocationFacts, RegionIndex


class OfflineGeolocationProvider:
    name = "offline"

    def __init__(self, regions: RegionIndex, ip: MaxMindIpIntelligence) -> None:
        self.regions = regions
        self.ip = ip

    def locate(self, request: LocationRequest) -> LocationFacts:
        placement = self.regions.place(request.latitude, request.longitude)
        ip = self.ip.lookup(request.ip_address)
        return LocationFacts(
            jurisdiction=placement.jurisdiction,
            distance_to_border_miles=round(placement.distance_to_border_miles, 4),
            ip_country=ip.country,
            ip_subdivision=ip.subdivision,
            anonymous_flags=ip.anonymous_flags,
        )
