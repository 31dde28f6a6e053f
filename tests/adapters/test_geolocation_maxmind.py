"""IP intelligence through real MaxMind DB files read by geoip2: shipped GeoLite2 and test DBs."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.geolocation.maxmind import (
    BLOCKLIST_FLAG,
    MaxMindIpIntelligence,
    shipped_geolite2_city,
)
from tests.support.compliance import (
    BLOCKLISTED_IP,
    CANADA_IP,
    NJ_RESIDENTIAL_IP,
    PROXY_IP,
    VPN_IP,
    write_test_mmdbs,
)


@pytest.fixture(scope="module")
def mmdb_files(tmp_path_factory) -> tuple[Path, Path]:
    return write_test_mmdbs(tmp_path_factory.mktemp("mmdb"))


def test_shipped_geolite2_city_database_is_found_and_read():
    assert shipped_geolite2_city().is_file()
    ip = MaxMindIpIntelligence()
    princeton = ip.lookup("128.112.0.1")  # Princeton University, in GeoLite2 2018
    assert princeton.country == "US" and princeton.subdivision == "US-NJ"
    assert princeton.anonymous_flags == ()
    # Private and loopback addresses are in no database: unknown, not an error.
    assert ip.lookup("10.1.2.3").country is None
    assert ip.lookup("::1").country is None


def test_flags_from_city_traits_anonymous_ip_database_and_blocklist(mmdb_files):
    city, anonymous = mmdb_files
    ip = MaxMindIpIntelligence(city, anonymous, ["100.64.0.0/10"])

    home = ip.lookup(NJ_RESIDENTIAL_IP)
    assert (home.country, home.subdivision, home.anonymous_flags) == ("US", "US-NJ", ())
    assert ip.lookup(PROXY_IP).anonymous_flags == ("is_anonymous_proxy",)
    assert set(ip.lookup(VPN_IP).anonymous_flags) == {"is_anonymous", "is_anonymous_vpn",
                                                      "is_hosting_provider"}
    assert ip.lookup(BLOCKLISTED_IP).anonymous_flags == (BLOCKLIST_FLAG,)
    canada = ip.lookup(CANADA_IP)
    assert (canada.country, canada.subdivision) == ("CA", "CA-ON")
