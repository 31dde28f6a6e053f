"""What one geolocation check means: allowed or blocked (with a named code), and for how long.

Rules, in the order they are applied:
  1. an anonymous IP (proxy, VPN, Tor, hosting provider) blocks: the location cannot be trusted;
  2. a device outside every licensed jurisdiction blocks;
  3. an IP that geolocates to another country than the licensed jurisdictions' blocks (when the
     policy asks for it): device coordinates alone can be spoofed;
  4. otherwise the check is allowed, valid for 20 minutes, or 5 when the device is within one
     mile of a border (the player can cross it quickly).
A check is also void as soon as the player's IP address changes (see `compliance.geolocation`).

Must never: read the clock (callers pass `now`), a database or a provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class GeoCode(StrEnum):
    ALLOWED = "allowed"
    GEOLOCATION_REQUIRED = "geolocation_required"          # no check on record
    GEOLOCATION_EXPIRED = "geolocation_expired"            # the last check is too old
    IP_CHANGED = "ip_changed"                              # the player moved to another IP
    OUTSIDE_LICENSED_JURISDICTION = "outside_licensed_jurisdiction"
    IP_OUTSIDE_LICENSED_COUNTRY = "ip_outside_licensed_country"
    ANONYMOUS_IP = "anonymous_ip"


@dataclass(frozen=True)
class GeoPolicy:
    licensed_jurisdictions: frozenset[str]           # ISO 3166-2 codes, e.g. {"US-NJ", "US-PA"}
    valid_for: timedelta = timedelta(minutes=20)
    near_border_valid_for: timedelta = timedelta(minutes=5)
    near_border_miles: float = 1.0
    ip_country_must_match: bool = True

    @property
    def licensed_countries(self) -> frozenset[str]:
        return frozenset(j.split("-", 1)[0] for j in self.licensed_jurisdictions)


@dataclass(frozen=True)
class LocationFacts:
    """What a provider found; no judgement yet."""
    jurisdiction: str | None                 # region holding the device, e.g. "US-NJ"
    distance_to_border_miles: float | None
    ip_country: str | None = None            # ISO 3166-1 alpha-2, None when unknown
    ip_subdivision: str | None = None        # e.g. "US-NJ", None when unknown
    anonymous_flags: tuple[str, ...] = ()    # e.g. ("is_anonymous_vpn", "is_hosting_provider")


@dataclass(frozen=True)
class GeoDecision:
    allowed: bool
    code: GeoCode
    reason: str
    valid_until: datetime


def decide(facts: LocationFacts, policy: GeoPolicy, now: datetime) -> GeoDecision:
    near_border = (facts.distance_to_border_miles is not None
                   and facts.distance_to_border_miles < policy.near_border_miles)
    valid_until = now + (policy.near_border_valid_for if near_border else policy.valid_for)

    if facts.anonymous_flags:
        return GeoDecision(False, GeoCode.ANONYMOUS_IP,
                           "the IP address belongs to an anonymising service ("
                           + ", ".join(facts.anonymous_flags) + ")", valid_until)
    if facts.jurisdiction not in policy.licensed_jurisdictions:
        where = facts.jurisdiction or "outside every known jurisdiction"
        return GeoDecision(False, GeoCode.OUTSIDE_LICENSED_JURISDICTION,
                           f"device located in {where}; licensed: "
                           + ", ".join(sorted(policy.licensed_jurisdictions)), valid_until)
    if (policy.ip_country_must_match and facts.ip_country is not None
            and facts.ip_country not in policy.licensed_countries):
        return GeoDecision(False, GeoCode.IP_OUTSIDE_LICENSED_COUNTRY,
                           f"the IP address is located in {facts.ip_country}", valid_until)
    distance = facts.distance_to_border_miles
    detail = f", {distance:.2f} miles from the border" if distance is not None else ""
    return GeoDecision(True, GeoCode.ALLOWED, f"device located in {facts.jurisdiction}{detail}",
                       valid_until)
