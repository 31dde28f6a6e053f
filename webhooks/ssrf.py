"""The SSRF guard: a webhook may only reach globally routable addresses (or allow-listed ones).

    guard = Guard(settings.webhooks_allowed_networks)          # resolver: the system's DNS
    target = await guard.target("https://hooks.partner.example/settlepay")
    # Target(address="203.0.113.9", ...): connect THERE, with Host / SNI = the original host

Decided at connect time, for every address the name resolves to: one refused address refuses
the URL (a name answering both a public and a private address is not "probably fine"). The
request then goes to the address that was checked (`Target.pinned_url`), so a second DNS answer
(rebinding) is never used. `address_refusal` is the decision on one address, testable without
sending a packet anywhere.
Must never: resolve a name twice for one connection, or let an allow-list entry widen anything
but the networks it names.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

URL_LENGTH_MAX = 2048


class Refused(Exception):
    """The URL may not be connected to; `reason` says why (shown in the attempt's error)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host:port (TCP), in its order, once each."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in seen:
            seen.append(address)
    return seen


def networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def address_refusal(address: str | IPAddress, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why a webhook may not connect to `address` (None: it may).

    Allowed: globally routable unicast addresses, and anything inside an allow-listed network.
    An IPv4-mapped IPv6 address (::ffff:10.0.0.1) is judged as the IPv4 address it maps."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip.version == net.version and ip in net for net in allowed):
        return None
    for refused, reason in ((ip.is_unspecified, "unspecified"), (ip.is_loopback, "loopback"),
                            (ip.is_link_local, "link-local"), (ip.is_multicast, "multicast"),
                            (ip.is_private, "private"), (ip.is_reserved, "reserved")):
        if refused:
            return f"{ip} is a {reason} address"
    if not ip.is_global:
        return f"{ip} is not a globally routable address"
    return None


def parse(url: str) -> SplitResult:
    """The URL if a webhook may have it (http or https, a host, no credentials); else Refused."""
    if len(url) > URL_LENGTH_MAX:
        raise Refused(f"the URL is longer than {URL_LENGTH_MAX} characters")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a port that is not a number in range
    except ValueError as error:
        raise Refused(f"the URL is not valid: {error}") from error
    if parts.scheme not in ("http", "https"):
        raise Refused("the URL must be http or https")
    if not parts.hostname:
        raise Refused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise Refused("the URL must not carry credentials")
    return parts


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True)
class Target:
    url: str            # as registered
    scheme: str
    host: str           # the name: Host header and TLS SNI
    port: int
    address: str        # the checked address connected to

    @property
    def pinned_url(self) -> str:
        """The URL with the checked address in place of the name."""
        parts = urlsplit(self.url)
        host = f"[{self.address}]" if ":" in self.address else self.address
        return parts._replace(netloc=f"{host}:{self.port}").geturl()

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


class Guard:
    def __init__(self, allowed_networks: Iterable[str] = (),
                 resolver: Resolver = system_resolver) -> None:
        self.allowed = networks(allowed_networks)
        self.resolver = resolver

    def check_literal(self, url: str) -> None:
        """What can be decided without DNS (at registration): the URL's form, and its host when
        that is an IP address. Raises Refused."""
        host = parse(url).hostname or ""
        literal = literal_address(host)
        if literal is not None:
            reason = address_refusal(literal, self.allowed)
            if reason is not None:
                raise Refused(reason)

    async def target(self, url: str) -> Target:
        """Resolve once, check every address, pin the first. Raises Refused."""
        parts = parse(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        literal = literal_address(host)
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                addresses = await self.resolver(host, port)
            except OSError as error:
                raise Refused(f"{host} does not resolve: {error}") from error
            if not addresses:
                raise Refused(f"{host} does not resolve")
        for address in addresses:
            reason = address_refusal(address, self.allowed)
            if reason is not None:
                raise Refused(f"{host} resolves to {address}: {reason}"
                              if literal is None else reason)
        return Target(url, parts.scheme, host, port, addresses[0])
