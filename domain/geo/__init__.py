"""Pure geolocation rules: where a point is, how far from a border, and what that means.

`regions` answers "which region holds this point and how far is its border" from plain
coordinate rings; `decision` turns the facts of one check into an allow/deny with a validity
window. Nothing here reads files, opens sockets or asks the clock: callers pass the polygons
(loaded by `adapters.geolocation`), the facts and "now".
"""

from domain.geo.decision import GeoDecision, GeoPolicy, LocationFacts, decide
from domain.geo.regions import Placement, Region, RegionIndex, haversine_miles

__all__ = ["GeoDecision", "GeoPolicy", "LocationFacts", "Placement", "Region", "RegionIndex",
           "decide", "haversine_miles"]
