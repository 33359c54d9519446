"""The egress guard's decisions: which addresses and names it refuses, in which spellings,
and how RUNKERNEL_EGRESS_ALLOW entries open exceptions."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from runkernel.adapters.skills.egress_rules import (
    EgressRules,
    forbidden_reason,
    literal_address,
    parse_allow_entry,
    parse_allow_list,
)
from runkernel.errors import ConfigurationError, EgressDeniedError

DEFAULT = EgressRules()


def refusal(rules: EgressRules, host: str, port: int = 80, *resolved: str) -> str | None:
    """The guard's message for ``host`` (resolving to ``resolved``, or to itself when it is
    a literal), None when it lets the call through."""
    literal = literal_address(host)
    addresses = [ip_address(a) for a in resolved] if resolved else [literal]
    try:
        rules.check_host(host, port)
        rules.check_addresses(host, port, [a for a in addresses if a is not None])
    except EgressDeniedError as exc:
        assert exc.code == "egress_denied"
        return exc.message
    return None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.255.255.254", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.0.0.5", "a private address (RFC 1918)"),
        ("172.16.0.1", "a private address (RFC 1918)"),
        ("172.31.255.255", "a private address (RFC 1918)"),
        ("192.168.1.1", "a private address (RFC 1918)"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("fc00::1", "a unique-local address"),
        ("fd12:3456::1", "a unique-local address"),
        ("224.0.0.1", "a multicast address"),
        ("239.255.255.250", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("0.0.0.0", "an unspecified ('this network') address"),
        ("0.1.2.3", "an unspecified ('this network') address"),
        ("::", "an unspecified address"),
        ("100.64.0.1", "a shared address (CGNAT, RFC 6598)"),
        ("100.127.255.254", "a shared address (CGNAT, RFC 6598)"),
        ("198.18.0.1", "a benchmarking address (RFC 2544)"),
        ("192.0.2.1", "a documentation address (RFC 5737)"),
        ("2001:db8::1", "a documentation address (RFC 3849)"),
        ("240.0.0.1", "a reserved address"),
        ("255.255.255.255", "the broadcast address"),
        ("192.0.0.8", "an IETF protocol address (RFC 6890)"),
        ("fec0::1", "a site-local address"),
        ("100::1", "a discard-only address (RFC 6666)"),
        ("4000::1", "a reserved address (outside 2000::/3)"),
        ("169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("168.63.129.16", "a cloud metadata address"),
        ("::ffff:127.0.0.1", "an IPv4-mapped form of 127.0.0.1, a loopback address"),
        ("::ffff:169.254.169.254", "an IPv4-mapped form of 169.254.169.254, a cloud metadata"),
        ("::10.0.0.1", "an IPv4-compatible form of 10.0.0.1, a private address"),
        ("64:ff9b::192.168.0.1", "a NAT64 form of 192.168.0.1, a private address"),
        ("2002:7f00:1::", "a 6to4 form of 127.0.0.1, a loopback address"),
    ],
)
def test_every_special_address_class_is_refused(address: str, reason: str) -> None:
    found = forbidden_reason(ip_address(address))

    assert found is not None and found.startswith(reason)


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::"],
)
def test_globally_routable_addresses_pass(address: str) -> None:
    assert forbidden_reason(ip_address(address)) is None


@pytest.mark.parametrize(
    "spelling",
    [
        "127.0.0.1",
        "2130706433",  # decimal
        "0177.0.0.1",  # octal
        "0x7f000001",  # hex
        "0x7f.0.0.1",
        "0x7f.1",
        "127.1",  # short
        "127.0.1",
        "017700000001",
        "127.0.0.1.",  # trailing dot
        "[::ffff:127.0.0.1]",
        "::ffff:7f00:1",
        "[::1]",
        "0:0:0:0:0:0:0:1",
    ],
)
def test_every_spelling_of_loopback_is_refused(spelling: str) -> None:
    message = refusal(DEFAULT, spelling)

    assert message is not None
    assert message.startswith("egress_denied: ")
    assert "loopback address; allow it with RUNKERNEL_EGRESS_ALLOW" in message


def test_the_message_is_uniform_and_names_the_rule() -> None:
    assert refusal(DEFAULT, "10.0.0.5", 5432) == (
        "egress_denied: 10.0.0.5 is a private address (RFC 1918); "
        "allow it with RUNKERNEL_EGRESS_ALLOW"
    )
    assert refusal(DEFAULT, "2130706433") == (
        "egress_denied: 2130706433 (127.0.0.1) is a loopback address; "
        "allow it with RUNKERNEL_EGRESS_ALLOW"
    )
    # The port plays no part in the words: no way to tell an open port from a closed one.
    assert refusal(DEFAULT, "10.0.0.5", 1) == refusal(DEFAULT, "10.0.0.5", 5432)


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("localhost", "a loopback host name"),
        ("LOCALHOST.", "a loopback host name"),
        ("app.localhost", "a loopback host name"),
        ("metadata.google.internal", "a cloud metadata host name"),
        ("Metadata.Google.Internal.", "a cloud metadata host name"),
        ("metadata", "a cloud metadata host name"),
        ("instance-data.ec2.internal", "a cloud metadata host name"),
    ],
)
def test_special_names_are_refused_before_any_lookup(host: str, reason: str) -> None:
    with pytest.raises(EgressDeniedError) as info:
        DEFAULT.check_host(host, 80)

    assert reason in info.value.message


def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    assert refusal(DEFAULT, "db.example.com", 443, "10.0.0.7") == (
        "egress_denied: db.example.com resolves to 10.0.0.7, a private address (RFC 1918); "
        "allow it with RUNKERNEL_EGRESS_ALLOW"
    )


def test_one_special_address_among_public_ones_refuses_the_name() -> None:
    message = refusal(DEFAULT, "mixed.example.com", 443, "93.184.216.34", "169.254.169.254")

    assert message is not None and "resolves to 169.254.169.254, a cloud metadata" in message
    assert refusal(DEFAULT, "public.example.com", 443, "93.184.216.34", "2606:4700::1") is None


# --- RUNKERNEL_EGRESS_ALLOW ----------------------------------------------------------------


def test_allow_an_ip_with_a_port_opens_only_that_port() -> None:
    rules = EgressRules.parse("127.0.0.1:9000")

    assert refusal(rules, "127.0.0.1", 9000) is None
    assert refusal(rules, "127.0.0.1", 9001) is not None
    assert refusal(rules, "127.0.0.2", 9000) is not None
    # Another spelling of the same address is the same address.
    assert refusal(rules, "2130706433", 9000) is None


def test_allow_a_cidr_block() -> None:
    rules = EgressRules.parse("10.0.0.0/8, fd00::/8")

    assert refusal(rules, "10.1.2.3", 5432) is None
    assert refusal(rules, "db.corp", 5432, "10.9.9.9") is None
    assert refusal(rules, "fd00::5", 80) is None
    assert refusal(rules, "192.168.0.1", 80) is not None
    assert refusal(rules, "fc00::1", 80) is not None  # fc00::/8 is not fd00::/8


def test_allow_a_host_name_opens_all_its_addresses() -> None:
    rules = EgressRules.parse("crm.internal,Metadata.Google.Internal.:80")

    assert refusal(rules, "crm.internal", 443, "10.0.0.1", "192.168.1.1") is None
    assert refusal(rules, "CRM.internal.", 8080, "10.0.0.1") is None
    assert refusal(rules, "metadata.google.internal", 80, "169.254.169.254") is None
    assert refusal(rules, "metadata.google.internal", 8080, "169.254.169.254") is not None
    # A host entry opens the name, not the addresses it happens to have.
    assert refusal(rules, "other.internal", 443, "10.0.0.1") is not None
    assert refusal(rules, "10.0.0.1", 443) is not None


def test_allow_ipv6_with_a_port_in_brackets() -> None:
    rules = EgressRules.parse("[::1]:9000,[fd00::/8]:443")

    assert refusal(rules, "::1", 9000) is None
    assert refusal(rules, "[::1]", 9000) is None
    assert refusal(rules, "::1", 9001) is not None
    assert refusal(rules, "fd00::1", 443) is None
    assert refusal(rules, "fd00::1", 80) is not None


def test_allow_list_parsing() -> None:
    entries = parse_allow_list(" 127.0.0.1:9000 ,10.0.0.0/8,crm.internal,[::1]:9000,::1,")

    assert [(e.network and str(e.network), e.host, e.port) for e in entries] == [
        ("127.0.0.1/32", None, 9000),
        ("10.0.0.0/8", None, None),
        (None, "crm.internal", None),
        ("::1/128", None, 9000),
        ("::1/128", None, None),
    ]
    assert parse_allow_list("") == ()


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("10.0.0.1/8", "has host bits set"),
        ("10.0.0.0/33", "does not appear to be an IPv4 or IPv6 network"),
        ("300.1.1.1", "does not appear to be an IPv4 or IPv6 network"),
        ("127.1", "does not appear to be an IPv4 or IPv6 network"),  # spell it out
        ("0x7f000001", "not an IP address, a CIDR block or a host name"),
        ("*", "not an IP address, a CIDR block or a host name"),
        ("bad host", "not an IP address, a CIDR block or a host name"),
        ("-bad.example", "not an IP address, a CIDR block or a host name"),
        ("http://crm.internal", "a URL; write the host (and :port) only"),
        ("crm.internal:0", "port must be a number in 1..65535, got '0'"),
        ("crm.internal:65536", "port must be a number in 1..65535"),
        ("crm.internal:", "port must be a number in 1..65535, got ''"),
        ("10.0.0.1:http", "port must be a number in 1..65535, got 'http'"),
        ("[10.0.0.1]:80", "brackets are for IPv6 addresses only"),
        ("[::1]:x", "port must be a number"),
    ],
)
def test_invalid_allow_entries_are_configuration_errors(entry: str, why: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_allow_list(f"127.0.0.1,{entry}")

    message = info.value.message
    assert message.startswith(f"RUNKERNEL_EGRESS_ALLOW: invalid entry {entry!r}: ")
    assert why in message
    assert "e.g. 127.0.0.1:9000,10.0.0.0/8,[::1]:9000" in message


def test_an_entry_keeps_its_text_for_the_startup_log() -> None:
    rules = EgressRules.parse("127.0.0.1:9000, crm.internal")

    assert rules.describe() == "127.0.0.1:9000, crm.internal"
    assert parse_allow_entry("crm.internal").text == "crm.internal"


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("192.168.257", "192.168.1.1"),
        ("0", "0.0.0.0"),
        ("[::1]", "::1"),
        ("fe80::1%25eth0", "fe80::1"),
        ("example.com", None),
        ("1.2.3.4.5", None),
        ("4294967296", None),  # over 32 bits: not an address, a (bad) name
        ("256.1.1.1", None),
        ("08", None),  # not octal
    ],
)
def test_literal_address_reads_what_a_resolver_would(host: str, address: str | None) -> None:
    found = literal_address(host)

    assert (None if found is None else str(found)) == address
