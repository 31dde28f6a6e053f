"""The SSRF guard's decisions, with a fake resolver: no packet is sent anywhere."""

from __future__ import annotations

import pytest

from webhooks.ssrf import Guard, Refused, Target, address_refusal, networks


class FakeResolver:
    """Answers from a table, one answer list per call in turn; counts the calls."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


@pytest.mark.parametrize("address, kind", [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("fc00::1", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"), ("100.64.0.1", "not a globally"),
    ("::ffff:10.0.0.1", "private"), ("::ffff:127.0.0.1", "loopback"),
])
def test_loopback_private_link_local_and_other_non_global_addresses_are_refused(address, kind):
    reason = address_refusal(address)
    assert reason is not None and kind in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_globally_routable_addresses_are_allowed(address):
    assert address_refusal(address) is None


def test_the_allow_list_admits_only_the_networks_it_names():
    allowed = networks(["127.0.0.1/32"])
    assert address_refusal("127.0.0.1", allowed) is None
    assert address_refusal("::ffff:127.0.0.1", allowed) is None
    assert address_refusal("127.0.0.2", allowed) is not None
    assert address_refusal("10.0.0.1", allowed) is not None


async def test_a_name_resolving_to_any_refused_address_is_refused():
    guard = Guard(resolver=FakeResolver(["93.184.216.34", "10.0.0.5"]))
    with pytest.raises(Refused, match="10.0.0.5"):
        await guard.target("https://hooks.partner.test/x")


async def test_the_checked_address_is_pinned_and_host_and_sni_keep_the_name():
    resolver = FakeResolver(["93.184.216.34", "93.184.216.35"])
    target = await Guard(resolver=resolver).target("https://hooks.partner.test/in?a=1")
    assert target == Target("https://hooks.partner.test/in?a=1", "https", "hooks.partner.test",
                            443, "93.184.216.34")
    assert target.pinned_url == "https://93.184.216.34:443/in?a=1"
    assert target.host_header == "hooks.partner.test"
    assert resolver.calls == [("hooks.partner.test", 443)]


async def test_dns_rebinding_between_registration_and_connection_is_refused_at_connect_time():
    # At registration nothing is resolved (a name passes); at connect time it answers private.
    resolver = FakeResolver(["169.254.169.254"])
    guard = Guard(resolver=resolver)
    guard.check_literal("http://rebind.partner.test/hook")
    with pytest.raises(Refused, match="link-local"):
        await guard.target("http://rebind.partner.test/hook")


async def test_an_ipv6_target_is_bracketed_in_the_pinned_url():
    target = await Guard(resolver=FakeResolver(["2606:4700:4700::1111"])).target(
        "http://v6.partner.test:8080/h")
    assert target.pinned_url == "http://[2606:4700:4700::1111]:8080/h"
    assert target.host_header == "v6.partner.test:8080"


@pytest.mark.parametrize("url", ["ftp://partner.test/x", "file:///etc/passwd",
                                 "http://user:pw@partner.test/x", "https:///nohost",
                                 "http://partner.test:99999/x", "http://10.0.0.1/x",
                                 "http://[::1]/x", "http://169.254.169.254/latest/meta-data"])
def test_registration_refuses_other_schemes_credentials_and_private_literals(url):
    with pytest.raises(Refused):
        Guard(["127.0.0.1/32"]).check_literal(url)


def test_registration_accepts_names_and_allow_listed_literals():
    guard = Guard(["127.0.0.1/32"])
    guard.check_literal("https://hooks.partner.test/x")
    guard.check_literal("http://127.0.0.1:9000/hooks/a")


async def test_a_name_that_does_not_resolve_is_refused():
    async def failing(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(Refused, match="does not resolve"):
        await Guard(resolver=failing).target("https://nowhere.partner.test/")
