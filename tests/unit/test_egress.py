"""The egress guard on real connections: no state shared between calls, names resolved once
and the checked address connected to, every redirect hop checked, proxies ignored."""

from __future__ import annotations

import ast
import logging
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path

import httpx
import pytest

import runkernel.adapters.skills
from runkernel.adapters.skills import Egress, SkillRegistry, build_default_registry
from runkernel.adapters.skills.egress import Resolver
from runkernel.adapters.skills.egress_rules import EgressRules, IPAddress
from runkernel.bootstrap import build_kernel
from runkernel.config import Settings
from runkernel.domain.skills import SkillContext, SkillResult
from runkernel.errors import ConfigurationError, SkillError
from support.http_server import LocalServer, Reply, local_server

LOOPBACK = ip_address("127.0.0.1")


def ctx(tenant: str, run: str, step: str = "s") -> SkillContext:
    return SkillContext(run_id=run, tenant_id=tenant, step_id=step, attempt=1)


def registry_for(allow: str, resolver: Resolver | None = None) -> SkillRegistry:
    settings = Settings(egress_allow=allow)
    egress = Egress.from_settings(settings)
    if resolver is not None:
        egress = Egress(egress.rules, egress.max_body_bytes, resolver)
    return build_default_registry(settings, egress=egress)


def get(registry: SkillRegistry, url: str, context: SkillContext, **extra: object) -> SkillResult:
    return registry.invoke("http.request", {"method": "GET", "url": url, **extra}, context)


def _cookie_server(request: httpx.Request) -> Reply:
    if request.url.path == "/login":
        return Reply(200, {"Set-Cookie": "session=tenant-a-secret; Path=/"}, b"logged in")
    return Reply(200, {"Content-Type": "text/plain"}, request.headers.get("cookie", "").encode())


@pytest.fixture
def cookie_server() -> Iterator[LocalServer]:
    with local_server(_cookie_server, keep_alive=True) as server:
        yield server


# --- point 1: nothing crosses calls ------------------------------------------------------


def test_a_cookie_set_for_one_tenant_reaches_no_other_call(cookie_server: LocalServer) -> None:
    registry = registry_for(cookie_server.authority)
    try:
        login = get(registry, cookie_server.url("/login"), ctx("tenant-a", "run-a1", "login"))
        same_run = get(registry, cookie_server.url("/echo"), ctx("tenant-a", "run-a1", "next"))
        other_tenant = get(registry, cookie_server.url("/echo"), ctx("tenant-b", "run-b1"))
        same_tenant = get(registry, cookie_server.url("/echo"), ctx("tenant-a", "run-a2"))
    finally:
        registry.close()

    assert login.ok and login.output["headers"]["set-cookie"].startswith("session=tenant-a")
    assert [same_run.output["body"], other_tenant.output["body"], same_tenant.output["body"]] == [
        "",
        "",
        "",
    ]
    assert all("cookie" not in r.headers for r in cookie_server.requests)


def test_no_connection_is_reused_between_calls(cookie_server: LocalServer) -> None:
    # The server keeps connections alive; a shared pool would send all three on one.
    registry = registry_for(cookie_server.authority)
    try:
        for tenant in ("tenant-a", "tenant-b", "tenant-a"):
            assert get(registry, cookie_server.url("/echo"), ctx(tenant, f"run-{tenant}")).ok
    finally:
        registry.close()

    assert len(cookie_server.requests) == 3
    assert len(set(cookie_server.peers)) == 3


# --- point 2: names, addresses, redirects --------------------------------------------------


def _ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"host": request.headers["host"], "path": request.url.path})


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with local_server(_ok) as server:
        yield server


def test_a_name_resolving_to_a_forbidden_address_is_refused_before_connecting(
    server: LocalServer,
) -> None:
    registry = registry_for("", resolver=lambda host, port: [LOOPBACK])
    url = f"http://intranet.example:{server.port}/admin"
    try:
        result = get(registry, url, ctx("t", "r"))
    finally:
        registry.close()

    assert result.error == (
        f"http.request: GET {url}: egress_denied: intranet.example resolves to 127.0.0.1, "
        "a loopback address; allow it with RUNKERNEL_EGRESS_ALLOW"
    )
    assert server.requests == []  # nothing reached the port, open as it is


def test_the_call_goes_to_the_address_that_was_checked(server: LocalServer) -> None:
    lookups: list[str] = []

    def resolver(host: str, port: int) -> list[IPAddress]:
        lookups.append(host)
        # Checked once; a second lookup (a rebinding DNS answer) would be metadata.
        return [LOOPBACK] if len(lookups) == 1 else [ip_address("169.254.169.254")]

    registry = registry_for(server.authority, resolver=resolver)
    try:
        result = get(registry, f"http://service.example:{server.port}/x", ctx("t", "r"))
    finally:
        registry.close()

    # The name exists only in this resolver: the system's was never asked, the connection
    # went to the checked 127.0.0.1, and the Host header is still the URL's name.
    assert result.ok, result.error
    assert result.output["body"] == {"host": f"service.example:{server.port}", "path": "/x"}
    assert lookups == ["service.example"]


def test_each_new_connection_is_checked_again(server: LocalServer) -> None:
    answers = iter([[LOOPBACK], [ip_address("169.254.169.254")]])
    registry = registry_for(server.authority, resolver=lambda host, port: next(answers))
    url = f"http://rebind.example:{server.port}/"
    try:
        first = get(registry, url, ctx("t", "r", "one"))
        second = get(registry, url, ctx("t", "r", "two"))
    finally:
        registry.close()

    assert first.ok
    assert second.error is not None
    assert "egress_denied: rebind.example resolves to 169.254.169.254, a cloud metadata" in (
        second.error
    )
    assert len(server.requests) == 1


def test_the_checked_addresses_are_tried_in_order(server: LocalServer) -> None:
    # 127.0.0.2 is loopback too, but the server listens on 127.0.0.1 only: refused there.
    two = [ip_address("127.0.0.2"), LOOPBACK]
    registry = registry_for(f"127.0.0.0/8:{server.port}", resolver=lambda host, port: two)
    try:
        result = get(registry, f"http://two.example:{server.port}/", ctx("t", "r"))
    finally:
        registry.close()

    assert result.ok, result.error
    assert len(server.requests) == 1


def test_a_name_that_does_not_resolve_fails_the_step() -> None:
    registry = registry_for("", resolver=lambda host, port: [])
    try:
        result = get(registry, "http://nowhere.example/", ctx("t", "r"))
    finally:
        registry.close()

    assert result.error == (
        "http.request: GET http://nowhere.example/ failed: cannot resolve host 'nowhere.example'"
    )


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("http://127.0.0.1:{other}/steal", "127.0.0.1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata"),
        ("http://[::ffff:10.0.0.1]/", "an IPv4-mapped form of 10.0.0.1, a private address"),
        ("http://metadata.google.internal/", "metadata.google.internal is a cloud metadata host"),
    ],
)
def test_a_redirect_from_an_allowed_host_to_a_forbidden_one_is_refused(
    target: str, words: str
) -> None:
    with local_server(_ok) as forbidden:
        location = target.format(other=forbidden.port)

        def redirect(request: httpx.Request) -> httpx.Response:
            return httpx.Response(302, headers={"Location": location})

        with local_server(redirect) as allowed:
            registry = registry_for(allowed.authority)
            try:
                result = get(registry, allowed.url("/go"), ctx("t", "r"), follow_redirects=True)
            finally:
                registry.close()

    assert result.error is not None
    assert result.error.startswith(f"http.request: GET {allowed.url('/go')}: egress_denied: ")
    assert words in result.error
    assert len(allowed.requests) == 1
    assert forbidden.requests == []


def test_redirects_between_allowed_places_are_followed_when_asked(server: LocalServer) -> None:
    def redirect(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": server.url("/landed")})

    with local_server(redirect) as first:
        registry = registry_for(f"{first.authority},{server.authority}")
        try:
            followed = get(registry, first.url("/go"), ctx("t", "r"), follow_redirects=True)
            not_followed = get(registry, first.url("/go"), ctx("t", "r"), ok_status=[302])
        finally:
            registry.close()

    assert followed.ok and followed.output["body"]["path"] == "/landed"
    assert not_followed.ok and not_followed.output["status"] == 302  # the default: no follow


def test_environment_proxies_are_ignored(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy would be a way around the guard (it connects, not us); nothing listens here.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    registry = registry_for(server.authority)
    try:
        direct = get(registry, server.url("/direct"), ctx("t", "r"))
        refused = get(registry, "http://10.0.0.1/", ctx("t", "r"))
    finally:
        registry.close()

    assert direct.ok and direct.output["body"]["path"] == "/direct"
    assert refused.error is not None and "egress_denied: 10.0.0.1 is a private" in refused.error


def test_webhook_and_llm_pass_the_same_guard(server: LocalServer) -> None:
    settings = Settings(llm_base_url=server.url("/v1"))  # llm.chat's own host: allowed
    registry = build_default_registry(settings)
    try:
        hook = registry.invoke(
            "webhook.send", {"url": "http://192.168.0.10/hook", "payload": {}}, ctx("t", "r")
        )
        hook_loopback = registry.invoke(
            "webhook.send", {"url": server.url("/hook"), "payload": {}}, ctx("t", "r")
        )
    finally:
        registry.close()

    assert hook.error == (
        "webhook.send: POST http://192.168.0.10/hook: egress_denied: 192.168.0.10 is a "
        "private address (RFC 1918); allow it with RUNKERNEL_EGRESS_ALLOW"
    )
    # llm.chat's base URL opens that host for llm.chat only, not for the plan-driven skills.
    assert hook_loopback.error is not None and "egress_denied" in hook_loopback.error
    assert server.requests == []


def test_a_malformed_url_at_call_time_is_a_failed_step() -> None:
    registry = registry_for("")
    try:
        result = get(registry, "http://0177.0.0.1/", ctx("t", "r"))
    finally:
        registry.close()

    assert result.error is not None
    assert result.error.startswith("http.request: GET http://0177.0.0.1/ failed: InvalidURL")


# --- startup ------------------------------------------------------------------------------


def test_the_allow_list_is_parsed_at_startup_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="runkernel.adapters.skills.egress"):
        registry = build_default_registry(Settings(egress_allow="127.0.0.1:9000,10.0.0.0/8"))
    registry.close()

    [record] = [r for r in caplog.records if r.name == "runkernel.adapters.skills.egress"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "egress guard: RUNKERNEL_EGRESS_ALLOW lets every tenant's HTTP skills reach "
        "127.0.0.1:9000, 10.0.0.0/8"
    )


def test_nothing_is_logged_when_nothing_is_opened(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        build_default_registry(Settings()).close()

    assert [r for r in caplog.records if "egress" in r.getMessage()] == []


def test_an_invalid_allow_entry_stops_the_kernel_from_starting(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/k.db", egress_allow="10.0.0.1/8")

    with pytest.raises(ConfigurationError, match=r"invalid entry '10.0.0.1/8': .*host bits"):
        build_kernel(settings)


def test_llm_base_url_opened_implicitly_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        build_default_registry(Settings(llm_base_url="http://127.0.0.1:11434/v1")).close()

    assert any(
        "llm.chat may reach http://127.0.0.1:11434/v1 whatever its address" in r.getMessage()
        for r in caplog.records
    )


# --- the only way out -----------------------------------------------------------------------


def test_no_skill_builds_an_http_client_but_the_egress_module() -> None:
    """Structural: a skill that made its own httpx client would skip the guard."""
    package = Path(runkernel.adapters.skills.__file__).parent
    building = {"Client", "HTTPTransport", "ConnectionPool", "request", "get", "post", "stream"}
    offenders = [
        f"{path.name}:{node.lineno} {node.value.id}.{node.attr}"
        for path in package.glob("*.py")
        if path.name != "egress.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in ("httpx", "httpcore")
        and node.attr in building
    ]
    assert offenders == []


def test_the_guarded_client_is_really_in_the_path() -> None:
    # If httpx ever stopped using the replaced pool, loopback would be reached unguarded.
    egress = Egress(EgressRules(), max_body_bytes=1024)

    with pytest.raises(Exception, match="egress_denied: 127.0.0.1 is a loopback address"):
        egress.send("test", "GET", "http://127.0.0.1:9/", timeout=1)


def test_https_verifies_the_name_while_connecting_to_the_checked_address(
    tmp_path: Path,
) -> None:
    """The socket goes to 127.0.0.1, yet TLS sends SNI ``service.example`` and checks the
    certificate against that name, as it would without the guard."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert_pem, key_pem = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        + ["-nodes", "-days", "1", "-subj", "/CN=service.example"]
        + ["-addext", "subjectAltName=DNS:service.example"]
        + ["-keyout", str(key_pem), "-out", str(cert_pem)],
        check=True,
        capture_output=True,
    )
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_pem, key_pem)
    names: list[str | None] = []
    server_tls.sni_callback = lambda sock, sni, context: names.append(sni)
    client_tls = ssl.create_default_context(cafile=str(cert_pem))

    with local_server(_ok, tls=server_tls) as server:
        egress = Egress(
            EgressRules.parse(server.authority),
            max_body_bytes=1024,
            resolver=lambda host, port: [LOOPBACK],
            ssl_context=client_tls,
        )
        reply = egress.send("t", "GET", f"https://service.example:{server.port}/tls", timeout=5)
        with pytest.raises(SkillError, match="CERTIFICATE_VERIFY_FAILED"):
            # The same server under its address: the certificate is not for that name.
            egress.send("t", "GET", f"https://127.0.0.1:{server.port}/tls", timeout=5)

    assert reply.json() == {"host": f"service.example:{server.port}", "path": "/tls"}
    assert names[0] == "service.example"
