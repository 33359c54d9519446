"""The egress guard: the one way a skill makes an HTTP call.

A skill that calls out takes an :class:`Egress` and calls :meth:`Egress.send`. Each call
gets a client of its own, so nothing a server sets (cookies) or holds (a kept-alive
connection, with whatever credentials a server bound to it) reaches another call — of
another tenant, or of another run or step of the same one. A pool shared per tenant would
save a TCP/TLS handshake per call, but runs of one tenant must not share state either, and
a handshake is small next to the database writes around every step.

The guard sits where connections are made: a network backend under httpx that resolves the
name once, refuses it unless every address is allowed (:mod:`.egress_rules`), and connects
to exactly the address it checked. A name that resolves differently the second time (DNS
rebinding) therefore cannot slip through, every redirect hop opens its connection through
the same backend, TLS still verifies the certificate against the name (SNI and ``Host``
are the URL's), and environment proxies are ignored (``trust_env=False``) so
``HTTP_PROXY`` cannot route around it. A refusal is decided before any packet leaves, so
its message says nothing about the port's state; connection failures to allowed
destinations read the same whether the port was closed or filtered.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from runkernel.adapters.skills.body import ACCEPT_ENCODING, read_limited
from runkernel.adapters.skills.egress_rules import (
    AllowEntry,
    EgressRules,
    IPAddress,
    literal_address,
    normalize_host,
)
from runkernel.adapters.telemetry.redaction import redact_text, redact_url
from runkernel.config import Settings
from runkernel.errors import EgressDeniedError, SkillError

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], Sequence[IPAddress]]
MAX_REDIRECTS = 5
_HOP_BY_HOP = ("content-encoding",)  # the body handed on is decoded


def resolve_system(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for ``host``, in its order, once each."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve host {host!r}") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        address = ip_address(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to checked addresses."""

    def __init__(self, rules: EgressRules, resolver: Resolver) -> None:
        self._rules = rules
        self._resolver = resolver

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        self._rules.check_host(host, port)
        literal = literal_address(host)
        addresses = [literal] if literal is not None else self._resolver(host, port)
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve host {host!r}")
        self._rules.check_addresses(host, port, addresses)
        for address in addresses:
            try:
                return super().connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                continue  # the next address; the error below says the same for all
        raise httpcore.ConnectError(f"could not connect to {normalize_host(host)}:{port}")

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("skills may not connect to unix sockets")


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, backend: httpcore.NetworkBackend, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx takes no network backend, so its pool is replaced by one that has ours; the
        # replaced pool never opened anything.
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=MAX_REDIRECTS + 1,
            network_backend=backend,
        )


@dataclass(frozen=True)
class Egress:
    """Guarded, bounded HTTP for skills. ``max_body_bytes`` bounds every response body."""

    rules: EgressRules
    max_body_bytes: int
    resolver: Resolver = field(default=resolve_system)
    # Loading the CA bundle costs ~15 ms, so the verification settings are built once. The
    # context carries no per-call state: Python clients resume no TLS session unless given
    # one, and httpcore gives none.
    ssl_context: ssl.SSLContext = field(default_factory=httpx.create_ssl_context, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, resolver: Resolver = resolve_system) -> Egress:
        """Parse ``RUNKERNEL_EGRESS_ALLOW`` (a bad entry is a ``ConfigurationError``) and say in
        the log what it opens."""
        rules = EgressRules.parse(settings.egress_allow)
        if rules.allow:
            log.warning(
                "egress guard: RUNKERNEL_EGRESS_ALLOW lets every tenant's HTTP skills reach %s",
                rules.describe(),
            )
        return cls(rules, settings.max_step_output_bytes, resolver)

    def allowing(self, url: str) -> Egress:
        """This guard, also allowing the host and port of ``url`` (an operator's setting,
        never a plan's: for ``llm.chat``'s base URL)."""
        parts = urlsplit(url)
        host = normalize_host(parts.hostname or "")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        entry = AllowEntry(f"{host}:{port}", host=host, port=port)
        return replace(self, rules=EgressRules((*self.rules.allow, entry)))

    def send(
        self,
        skill: str,
        method: str,
        url: str,
        *,
        timeout: float,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        json: Any = None,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """One request on a fresh client; the returned response is fully read (decoded, at
        most ``max_body_bytes``). Every failure is a :class:`SkillError` (an
        ``EgressDeniedError`` when the guard refused) whose message starts with ``skill``
        and the method and redacted URL."""
        where = f"{skill}: {method} {redact_url(url)}"
        client = httpx.Client(
            transport=_GuardedTransport(
                GuardedBackend(self.rules, self.resolver), self.ssl_context
            ),
            trust_env=False,
            follow_redirects=follow_redirects,
            max_redirects=MAX_REDIRECTS,
            headers={"Accept-Encoding": ACCEPT_ENCODING},
        )
        try:
            with (
                client,
                client.stream(
                    method, url, headers=headers, content=content, json=json, timeout=timeout
                ) as response,
            ):
                body = read_limited(response, self.max_body_bytes)
        except EgressDeniedError as exc:
            raise EgressDeniedError(f"{where}: {exc.message}") from exc
        except SkillError as exc:  # too large, undecodable
            raise SkillError(f"{where}: {exc.message}") from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise SkillError(f"{where} failed: {_describe(exc)}") from exc
        kept = [(k, v) for k, v in response.headers.multi_items() if k not in _HOP_BY_HOP]
        return httpx.Response(
            response.status_code, headers=kept, content=body, request=response.request
        )


def _describe(exc: httpx.HTTPError | httpx.InvalidURL) -> str:
    if isinstance(exc, httpx.ConnectError):
        return str(exc)  # our backend's words, the same for a closed and a filtered port
    if isinstance(exc, httpx.TooManyRedirects):
        return f"more than {MAX_REDIRECTS} redirects"
    return f"{type(exc).__name__}: {redact_text(str(exc))}"
