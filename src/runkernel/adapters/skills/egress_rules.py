"""What the egress guard lets a skill connect to: globally routable addresses, plus the
operator's exceptions (``RUNKERNEL_EGRESS_ALLOW``).

Pure decisions on names and addresses; :mod:`runkernel.adapters.skills.egress` resolves
names and connects. A destination is refused when any address its name resolves to is
special — loopback, private, link-local, unique-local, multicast, unspecified, reserved,
shared (CGNAT), documentation, benchmarking, cloud metadata — or written in a form that
embeds one (IPv4-mapped, IPv4-compatible, NAT64, 6to4), unless an allow entry covers it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import NoReturn

from runkernel.errors import ConfigurationError, EgressDeniedError

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
SETTING = "RUNKERNEL_EGRESS_ALLOW"

_V4 = (
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("127.0.0.0/8", "a loopback address"),
    ("10.0.0.0/8", "a private address (RFC 1918)"),
    ("172.16.0.0/12", "a private address (RFC 1918)"),
    ("192.168.0.0/16", "a private address (RFC 1918)"),
    ("169.254.169.254/32", "a cloud metadata address"),
    ("100.100.100.200/32", "a cloud metadata address"),
    ("168.63.129.16/32", "a cloud metadata address"),
    ("100.64.0.0/10", "a shared address (CGNAT, RFC 6598)"),
    ("169.254.0.0/16", "a link-local address"),
    ("192.0.0.0/24", "an IETF protocol address (RFC 6890)"),
    ("192.0.2.0/24", "a documentation address (RFC 5737)"),
    ("198.51.100.0/24", "a documentation address (RFC 5737)"),
    ("203.0.113.0/24", "a documentation address (RFC 5737)"),
    ("198.18.0.0/15", "a benchmarking address (RFC 2544)"),
    ("192.88.99.0/24", "a reserved 6to4 relay address (RFC 7526)"),
    ("224.0.0.0/4", "a multicast address"),
    ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address"),
)
_V6 = (
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("fd00:ec2::254/128", "a cloud metadata address"),
    ("fc00::/7", "a unique-local address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address (RFC 8215)"),
    ("100::/64", "a discard-only address (RFC 6666)"),
    ("2001:db8::/32", "a documentation address (RFC 3849)"),
    ("2001::/23", "an IETF protocol address (RFC 2928)"),
)
_RULES: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ip_network(block), why) for block, why in _V4 + _V6
)
_GLOBAL_UNICAST_V6 = IPv6Network("2000::/3")
# An IPv6 address in these blocks reaches the IPv4 address it carries.
_EMBEDDING_V4 = (
    (IPv6Network("::ffff:0:0/96"), "an IPv4-mapped"),
    (IPv6Network("::/96"), "an IPv4-compatible"),
    (IPv6Network("64:ff9b::/96"), "a NAT64"),
)
# Names that reach the host itself or a cloud's metadata service whatever DNS says.
_HOST_NAMES = {
    "localhost": "a loopback host name",
    "metadata": "a cloud metadata host name",
    "metadata.google.internal": "a cloud metadata host name",
    "metadata.goog": "a cloud metadata host name",
    "instance-data": "a cloud metadata host name",
    "instance-data.ec2.internal": "a cloud metadata host name",
}
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def normalize_host(host: str) -> str:
    """Lower case, without the trailing dot of a fully qualified name or IPv6 brackets."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host[:-1] if host.endswith(".") else host


def forbidden_reason(address: IPAddress) -> str | None:
    """Why the guard refuses ``address`` by default, or None when it is globally routable."""
    if isinstance(address, IPv6Address):
        for block, form in _EMBEDDING_V4:
            if address in block and address not in (IPv6Address("::"), IPv6Address("::1")):
                inner = IPv4Address(int(address) & 0xFFFFFFFF)
                reason = forbidden_reason(inner)
                return None if reason is None else f"{form} form of {inner}, {reason}"
        if address.sixtofour is not None:
            reason = forbidden_reason(address.sixtofour)
            return None if reason is None else f"a 6to4 form of {address.sixtofour}, {reason}"
    for network, why in _RULES:
        if address.version == network.version and address in network:
            return why
    if isinstance(address, IPv6Address) and address not in _GLOBAL_UNICAST_V6:
        return "a reserved address (outside 2000::/3)"
    if address.is_multicast or address.is_reserved or not address.is_global:
        return "not a globally routable address"
    return None


@dataclass(frozen=True, slots=True)
class AllowEntry:
    """One exception: exactly one of ``network`` and ``host`` is set; ``port`` None = any.

    A host entry opens that name (case and a trailing dot aside), whatever it resolves to:
    the operator vouches for the name. An IP or CIDR entry opens those addresses, whatever
    name or spelling leads there; it is matched on the address family it is written in, so
    ``127.0.0.1`` does not open ``[::ffff:127.0.0.1]``."""

    text: str
    network: IPNetwork | None = None
    host: str | None = None
    port: int | None = None

    def covers_host(self, host: str, port: int) -> bool:
        return self.host is not None and self.host == host and self._port_fits(port)

    def covers_address(self, address: IPAddress, port: int) -> bool:
        return (
            self.network is not None
            and address.version == self.network.version
            and address in self.network
            and self._port_fits(port)
        )

    def _port_fits(self, port: int) -> bool:
        return self.port is None or self.port == port


def parse_allow_list(text: str) -> tuple[AllowEntry, ...]:
    """Parse ``RUNKERNEL_EGRESS_ALLOW``: comma-separated IPs, CIDR blocks or host names, each
    optionally with ``:port`` (an IPv6 address or block with a port in brackets,
    ``[::1]:9000``). Empty items are skipped; anything else invalid is a
    :class:`ConfigurationError` naming the entry."""
    return tuple(parse_allow_entry(item.strip()) for item in text.split(",") if item.strip())


def parse_allow_entry(text: str) -> AllowEntry:
    if "://" in text:
        _invalid(text, "a URL; write the host (and :port) only")
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::([^:]*))?", text)
    if bracketed:
        target, port_text = bracketed.group(1), bracketed.group(2)
        if ":" not in target:
            _invalid(text, "brackets are for IPv6 addresses only")
    elif text.count(":") >= 2:
        target, port_text = text, None  # a bare IPv6 address or block
    else:
        target, _, port_text = text.partition(":")
        port_text = port_text if ":" in text else None
    port = None if port_text is None else _parse_port(text, port_text)
    if "/" in target or ":" in target or re.fullmatch(r"[0-9.]+", target):
        return AllowEntry(text, network=_parse_network(text, target), port=port)
    host = normalize_host(target)
    if host.startswith("0x") or not all(_LABEL.match(label) for label in host.split(".")):
        _invalid(text, "not an IP address, a CIDR block or a host name")
    return AllowEntry(text, host=host, port=port)


def _parse_network(text: str, target: str) -> IPNetwork:
    try:
        return ip_network(target, strict=True)
    except ValueError as exc:
        _invalid(text, str(exc))


def _parse_port(text: str, port_text: str) -> int:
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        _invalid(text, f"port must be a number in 1..65535, got {port_text!r}")
    return int(port_text)


def _invalid(text: str, why: str) -> NoReturn:
    raise ConfigurationError(
        f"{SETTING}: invalid entry {text!r}: {why} (entries are IPs, CIDR blocks or host "
        "names, each optionally with :port, e.g. 127.0.0.1:9000,10.0.0.0/8,[::1]:9000)"
    )


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells, in any form a resolver would take: dotted, ``127.1``,
    ``2130706433``, ``0x7f000001``, octal ``0177.0.0.1``, IPv6 with or without a zone."""
    host = normalize_host(host)
    try:
        return ip_address(host.split("%", 1)[0])
    except ValueError:
        return _legacy_ipv4(host)


def _legacy_ipv4(host: str) -> IPv4Address | None:
    """An address in the forms ``inet_aton`` takes beyond dotted quads, or None."""
    if not re.fullmatch(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}", host):
        return None
    # inet_aton's rules: the last part fills the remaining bytes; 0x is hex, a leading 0 octal.
    parts = [_number(part) for part in host.split(".")]
    if any(part is None for part in parts):
        return None
    numbers = [part for part in parts if part is not None]
    value, width = 0, 4
    for number in numbers[:-1]:
        if number > 0xFF:
            return None
        value, width = value << 8 | number, width - 1
    if numbers[-1] >= 1 << (8 * width):
        return None
    return IPv4Address(value << (8 * width) | numbers[-1])


def _number(part: str) -> int | None:
    try:
        if part.startswith("0x"):
            return int(part[2:] or "0", 16)
        if len(part) > 1 and part.startswith("0"):
            return int(part, 8)
        return int(part)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class EgressRules:
    """The decision: :meth:`check_host` before resolving, :meth:`check_addresses` after."""

    allow: tuple[AllowEntry, ...] = ()

    @classmethod
    def parse(cls, text: str) -> EgressRules:
        return cls(parse_allow_list(text))

    def host_allowed(self, host: str, port: int) -> bool:
        """True when an allow entry names this host: all its addresses are then allowed."""
        host = normalize_host(host)
        return any(entry.covers_host(host, port) for entry in self.allow)

    def check_host(self, host: str, port: int) -> None:
        """Refuse names that are special whatever they resolve to (``localhost``, metadata)."""
        name = normalize_host(host)
        if self.host_allowed(name, port):
            return
        reason = _HOST_NAMES.get(name)
        if reason is None and name.endswith(".localhost"):
            reason = "a loopback host name"
        if reason is not None:
            raise denied(f"{name} is {reason}")

    def check_addresses(self, host: str, port: int, addresses: Sequence[IPAddress]) -> None:
        """Refuse unless every address ``host`` resolved to is allowed: one special address
        among public ones is what a rebinding attack looks like."""
        if self.host_allowed(host, port):
            return
        name = normalize_host(host)
        for address in addresses:
            if any(entry.covers_address(address, port) for entry in self.allow):
                continue
            reason = forbidden_reason(address)
            if reason is None:
                continue
            if literal_address(name) is not None:
                spelled = name if name == str(address) else f"{name} ({address})"
                raise denied(f"{spelled} is {reason}")
            raise denied(f"{name} resolves to {address}, {reason}")

    def describe(self) -> str:
        return ", ".join(entry.text for entry in self.allow)


def denied(what: str) -> EgressDeniedError:
    return EgressDeniedError(f"egress_denied: {what}; allow it with {SETTING}")
