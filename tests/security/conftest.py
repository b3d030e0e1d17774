"""What the security tests share: a fence that keeps this process's traffic on the machine,
and a resolver that answers from a zone the test writes."""

from __future__ import annotations

import ipaddress
import re
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

# inet_aton's spellings of IPv4 (2130706433, 0177.0.0.1), which getaddrinfo reads without DNS.
_NUMERIC_IPV4 = re.compile(r"(?:0x[0-9a-f]+|[0-9]+)(?:\.(?:0x[0-9a-f]+|[0-9]+)){0,3}", re.I)


def _numeric(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return bool(_NUMERIC_IPV4.fullmatch(host))
    return True


def _on_this_machine(host: str) -> bool:
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


@dataclass
class NetworkFence:
    """Sees every connect and name look-up of this process (an audit hook) while it is up.

    Loopback connections go through; any other connect fails with PermissionError and a name
    other than `localhost` is not looked up, so a test of refused addresses sends nothing off
    the machine even when the code it tests is wrong, and can tell what was attempted.
    """

    up: bool = False
    connects: list[tuple[str, int]] = field(default_factory=list)
    lookups: list[tuple[str, int]] = field(default_factory=list)

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.up:
            return
        if event == "socket.connect":
            sock, address = args
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                return
            host, port = str(address[0]), int(address[1])
            self.connects.append((host, port))
            if not _on_this_machine(host):
                raise PermissionError(f"network fence: {host} is not on this machine")
        elif event == "socket.getaddrinfo":
            host = args[0].decode() if isinstance(args[0], bytes) else args[0]
            if host is None:
                return
            port = args[1].decode() if isinstance(args[1], bytes) else args[1]
            self.lookups.append((str(host), int(port or 0)))
            if not _numeric(str(host)) and str(host).lower() != "localhost":
                raise socket.gaierror(socket.EAI_NONAME, "network fence: no DNS")

    def connected_to(self, port: int) -> list[tuple[str, int]]:
        return [address for address in self.connects if address[1] == port]

    def looked_up_for(self, port: int) -> list[str]:
        return [host for host, looked_port in self.lookups if looked_port == port]


_fence = NetworkFence()
_hooked = False


@pytest.fixture
def fence() -> Iterator[NetworkFence]:
    global _hooked
    if not _hooked:
        # An audit hook cannot be removed: it is installed once, and idle while down.
        sys.addaudithook(_fence)
        _hooked = True
    _fence.connects.clear()
    _fence.lookups.clear()
    _fence.up = True
    try:
        yield _fence
    finally:
        _fence.up = False


class ZoneResolver(AbstractResolver):
    """Answers from a table of names and addresses the test writes, as a DNS server with that
    zone would, and asks the system's resolver (`/etc/hosts`) for any other name."""

    def __init__(self, zone: dict[str, list[str]]) -> None:
        self._zone = zone

    def __call__(self) -> ZoneResolver:
        return self

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self._zone:
            return await ThreadedResolver().resolve(host, port, family)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=socket.IPPROTO_TCP,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for address in self._zone[host]
        ]

    async def close(self) -> None:
        return None
