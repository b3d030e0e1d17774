"""Where webhooks may go: never to private, loopback, link-local, multicast or otherwise
reserved addresses, IPv4 or IPv6 (IPv6 forms that carry an IPv4 address included), unless the
operator allows private networks.

A URL is checked when it is saved (its IP literal, or the addresses its name resolves to then)
and again on every connection, on the addresses actually connected to: a name that resolves
elsewhere later (DNS rebinding) is refused at that point.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from coverline.kit.errors import ValidationFailed

ResolverFactory = Callable[[], AbstractResolver]
# A name that does not answer within this time is saved and checked on every connection.
SAVE_RESOLVE_SECONDS = 5.0
PRIVATE_LITERAL = "Private, loopback and link-local addresses are not allowed."
PRIVATE_NAME = "This host name resolves to a private, loopback or link-local address."

# IANA's special-purpose registries, written out so that the answer does not depend on the
# Python version's idea of `is_global`.
_FORBIDDEN_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/96",
        "::ffff:0:0:0/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "3fff::/20",
        "5f00::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# inet_aton's spellings of IPv4 (2130706433, 0177.0.0.1, 0x7f.1), which resolvers accept too.
_LEGACY_IPV4 = re.compile(r"(?:0x[0-9a-f]+|[0-9]+)(?:\.(?:0x[0-9a-f]+|[0-9]+)){0,3}", re.I)


class ForbiddenAddress(OSError):
    """The webhook URL leads to an address Coverline does not send to."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 or 6to4 address reaches."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def is_forbidden(address: str) -> bool:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
        address.split("%", 1)[0]
    )
    if isinstance(ip, ipaddress.IPv6Address):
        ip = _embedded_ipv4(ip) or ip
    if any(ip in network for network in _FORBIDDEN_NETWORKS):
        return True
    return not ip.is_global or ip.is_multicast


def literal_address(host: str) -> str | None:
    """The address an IP literal names, in any spelling a resolver would accept."""
    text = host.strip("[]")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(text):
        try:
            return socket.inet_ntoa(socket.inet_aton(text))
        except OSError:
            return None
    return None


def check_url(url: str, *, allow_private: bool) -> str:
    """Validate an endpoint URL when it is saved: its form, and an IP literal's address."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationFailed(errors={"url": ["Enter an http:// or https:// URL with a host."]})
    if parts.username or parts.password:
        raise ValidationFailed(errors={"url": ["Credentials in the URL are not allowed."]})
    literal = literal_address(parts.hostname)
    if literal is not None and not allow_private and is_forbidden(literal):
        raise ValidationFailed(errors={"url": [PRIVATE_LITERAL]})
    if literal is None:
        try:  # every label 1 to 63 characters, as DNS has them
            parts.hostname.encode("idna")
        except UnicodeError:
            raise ValidationFailed(errors={"url": ["The host name is not valid."]}) from None
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValidationFailed(errors={"url": ["The port must be from 1 to 65535."]})
    return url


async def check_name(url: str, *, allow_private: bool, resolver: ResolverFactory) -> None:
    """Refuse a URL whose host name resolves to a forbidden address when it is saved.

    Called before the transaction that saves the URL: an answer may take seconds, and no
    transaction stays open across a network call.
    """
    parts = urlsplit(url)
    host = parts.hostname
    if allow_private or not host or literal_address(host) is not None:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return
    guard = GuardedResolver(allow_private=False, inner=resolver())
    try:
        async with asyncio.timeout(SAVE_RESOLVE_SECONDS):
            await guard.resolve(host, port, socket.AF_UNSPEC)
    except ForbiddenAddress:
        raise ValidationFailed(errors={"url": [PRIVATE_NAME]}) from None
    except (OSError, TimeoutError, UnicodeError):
        # Not resolvable yet (its DNS may be set up later): every connection checks it.
        pass
    finally:
        await guard.close()


class GuardedResolver(AbstractResolver):
    """Resolves with another resolver (the default one unless given) and refuses forbidden
    addresses."""

    def __init__(self, allow_private: bool, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._allow_private:
            return results
        allowed = [r for r in results if not is_forbidden(r["host"])]
        if not allowed:
            raise ForbiddenAddress(f"{host} resolves only to private or reserved addresses")
        if len(allowed) != len(results):
            # A name that mixes public and private answers is refused whole: rebinding.
            raise ForbiddenAddress(f"{host} resolves to private or reserved addresses")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def refuse_literal(url: str, allow_private: bool) -> None:
    """aiohttp does not resolve IP literals, so they are checked before connecting."""
    host = urlsplit(url).hostname or ""
    literal = literal_address(host)
    if literal is not None and not allow_private and is_forbidden(literal):
        raise ForbiddenAddress(f"{literal} is a private or reserved address")
