"""Where webhooks may go: never to private, loopback, link-local, multicast or otherwise
reserved addresses, checked on the addresses actually connected to (so a public DNS name
that resolves to 10.0.0.1 is refused too), unless the operator allows private networks."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from coverline.kit.errors import ValidationFailed


class ForbiddenAddress(OSError):
    """The webhook URL leads to an address Coverline does not send to."""


def is_forbidden(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def literal_address(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def check_url(url: str, *, allow_private: bool) -> str:
    """Validate an endpoint URL when it is saved (DNS names are checked at connect time)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationFailed(errors={"url": ["Enter an http:// or https:// URL with a host."]})
    if parts.username or parts.password:
        raise ValidationFailed(errors={"url": ["Credentials in the URL are not allowed."]})
    literal = literal_address(parts.hostname)
    if literal is not None and not allow_private and is_forbidden(literal):
        raise ValidationFailed(
            errors={"url": ["Private, loopback and link-local addresses are not allowed."]}
        )
    return url


class GuardedResolver(AbstractResolver):
    """Resolves with the default resolver and refuses forbidden addresses."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = DefaultResolver()
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
