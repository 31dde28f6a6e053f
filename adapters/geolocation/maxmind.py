"""IP intelligence from MaxMind DB files (`geoip2` over `maxminddb`), plus a static blocklist.

Sources, all optional but the first:
  - a City or Country database: the GeoLite2-City shipped by `maxminddb-geolite2` by default, a
    licensed GeoIP2 City/Enterprise database when `geoip_city_db_path` is set. Its traits carry
    `is_anonymous_proxy` (and, in GeoIP2 Insights/Enterprise, the VPN/hosting/Tor flags);
  - a GeoIP2 Anonymous IP database (`geoip_anonymous_db_path`): VPN, hosting, public and
    residential proxies, Tor exit nodes;
  - `geoip_anonymous_cidrs`: ranges the operator blocks as anonymous/hosting (e.g. from a
    vendor feed or incident response), checked locally.
An address not in a database is "unknown", not an error: private addresses are never listed.
Must never: decide what a flag means for the player (that is `domain.geo`).
"""

from __future__ import annotations

import importlib.util
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import geoip2.database
import geoip2.errors
import geoip2.models

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Record = TypeVar("Record")

# Trait names shared by the City/Enterprise traits and the Anonymous IP model.
ANONYMOUS_FLAGS = ("is_anonymous", "is_anonymous_proxy", "is_anonymous_vpn", "is_hosting_provider",
                   "is_public_proxy", "is_residential_proxy", "is_tor_exit_node")
BLOCKLIST_FLAG = "in_anonymous_blocklist"


def shipped_geolite2_city() -> Path:
    spec = importlib.util.find_spec("_maxminddb_geolite2")
    if spec is None or spec.origin is None:
        raise RuntimeError("the maxminddb-geolite2 package (GeoLite2-City) is not installed")
    return Path(spec.origin).parent / "GeoLite2-City.mmdb"


@dataclass(frozen=True)
class IpFacts:
    country: str | None
    subdivision: str | None          # ISO 3166-2 style, e.g. "US-NJ"
    anonymous_flags: tuple[str, ...]


class MaxMindIpIntelligence:
    def __init__(self, city_db: str | Path | None = None, anonymous_db: str | Path | None = None,
                 anonymous_cidrs: Iterable[str] = ()) -> None:
        self._geo = geoip2.database.Reader(str(city_db or shipped_geolite2_city()))
        self._geo_type = self._geo.metadata().database_type
        self._anonymous = geoip2.database.Reader(str(anonymous_db)) if anonymous_db else None
        self._blocklist = tuple(ipaddress.ip_network(c, strict=False) for c in anonymous_cidrs)

    def lookup(self, ip: str) -> IpFacts:
        address = ipaddress.ip_address(ip)   # ValueError for garbage: the API validates first
        country = subdivision = None
        flags: list[str] = []
        model = self._geo_record(address)
        if model is not None:
            country = model.country.iso_code
            sub = getattr(model, "subdivisions", None)
            if country and sub is not None and sub.most_specific.iso_code:
                subdivision = f"{country}-{sub.most_specific.iso_code}"
            flags += [f for f in ANONYMOUS_FLAGS if getattr(model.traits, f, False)]
        if self._anonymous is not None:
            anon = self._lookup(self._anonymous.anonymous_ip, address)
            if anon is not None:
                flags += [f for f in ANONYMOUS_FLAGS if getattr(anon, f, False) and f not in flags]
        if any(address in net for net in self._blocklist if net.version == address.version):
            flags.append(BLOCKLIST_FLAG)
        return IpFacts(country, subdivision, tuple(flags))

    def _geo_record(self, address: IpAddress) -> geoip2.models.Country | None:
        """The City (or Country) record of the address; a City record is also a Country."""
        if "City" in self._geo_type or "Enterprise" in self._geo_type:
            return self._lookup(self._geo.city, address)
        return self._lookup(self._geo.country, address)

    @staticmethod
    def _lookup(method: Callable[[str], Record], address: IpAddress) -> Record | None:
        try:
            return method(str(address))
        except geoip2.errors.AddressNotFoundError:
            return None
        except ValueError:
            # An IPv6 address asked of an IPv4-only database: nothing known about it.
            return None

    def close(self) -> None:
        self._geo.close()
        if self._anonymous is not None:
            self._anonymous.close()
