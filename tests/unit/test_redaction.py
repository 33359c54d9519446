"""Secrets in URLs stay out of logs (httpx's own lines included) and out of step errors."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from runkernel.adapters.skills import build_default_registry
from runkernel.adapters.telemetry.redaction import (
    install_log_redaction,
    is_secret_name,
    redact_text,
    redact_url,
)
from runkernel.config import Settings
from runkernel.domain.skills import SkillContext
from support.http_server import local_server

CTX = SkillContext(run_id="r", tenant_id="t", step_id="s", attempt=1)


@pytest.fixture
def redacting() -> Iterator[None]:
    """Install the redaction for one test and put the process's record factory back."""
    before = logging.getLogRecordFactory()
    install_log_redaction()
    yield
    logging.setLogRecordFactory(before)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://user:pw@host/p?token=abc", "https://***@host/p?token=***"),
        ("https://host/p?page=2&api_key=k1&q=x", "https://host/p?page=2&api_key=***&q=x"),
        (
            "http://h/?access_token=a&Signature=b&sig=c",
            "http://h/?access_token=***&Signature=***&sig=***",
        ),
        (
            "http://h/?X-Amz-Signature=a&X-Amz-Credential=b",
            "http://h/?X-Amz-Signature=***&X-Amz-Credential=***",
        ),
        (
            "http://h/?apiKey=a&client_secret=b&password=c",
            "http://h/?apiKey=***&client_secret=***&password=***",
        ),
        ("http://h/?key=a&auth=b&passwd=c", "http://h/?key=***&auth=***&passwd=***"),
        ("http://h/cb#access_token=a&state=s", "http://h/cb#access_token=***&state=s"),
        ("http://token@h:8080/x", "http://***@h:8080/x"),
        ("http://h/p?page=2&sort=asc", "http://h/p?page=2&sort=asc"),
        ("http://h/a@b/c", "http://h/a@b/c"),  # an @ in the path is not user-info
        ("http://[::1]:9/?token=t", "http://[::1]:9/?token=***"),
        ("http://h/?token", "http://h/?token"),  # a flag without a value has nothing to hide
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_redact_text_finds_urls_in_prose_json_and_reprs() -> None:
    text = (
        "GET https://u:p@a.example/x?token=1 failed; "
        '{"url": "http://b.example/?key=2"} '
        "<Request('GET', 'http://c.example/?sig=3')>"
    )

    assert redact_text(text) == (
        "GET https://***@a.example/x?token=*** failed; "
        '{"url": "http://b.example/?key=***"} '
        "<Request('GET', 'http://c.example/?sig=***')>"
    )
    assert redact_text("no url here, token=1") == "no url here, token=1"


@pytest.mark.parametrize(
    "name", ["token", "api_key", "apiKey", "API-KEY", "x-amz-signature", "refresh_token", "pwd"]
)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["page", "q", "sort", "monkey", "design", "limit", "id"])
def test_ordinary_names(name: str) -> None:
    assert not is_secret_name(name)


def test_httpx_request_lines_are_logged_redacted(
    redacting: None, caplog: pytest.LogCaptureFixture
) -> None:
    with local_server(lambda request: httpx.Response(200, text="ok")) as server:
        registry = build_default_registry(Settings(egress_allow=server.authority))
        url = f"http://alice:hunter2@{server.authority}/data?token=s3cr3t&page=2"
        try:
            with caplog.at_level(logging.INFO, logger="httpx"):
                result = registry.invoke("http.request", {"method": "GET", "url": url}, CTX)
        finally:
            registry.close()

    assert result.ok
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert lines, "httpx logged no request line; the test would prove nothing"
    assert all("hunter2" not in line and "s3cr3t" not in line for line in lines)
    assert any(
        f"HTTP Request: GET http://***@{server.authority}/data?token=***&page=2" in line
        for line in lines
    )
    assert all("s3cr3t" not in text for text in (caplog.text, *map(str, caplog.records)))


def test_any_logger_and_any_tracebacks_are_redacted(
    redacting: None, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("runkernel.test.redaction")
    with caplog.at_level(logging.INFO):
        log.info("calling %s now", "https://api.example/v1?api_key=k-123")
        try:
            raise RuntimeError("boom at https://x.example/?token=t-456")
        except RuntimeError:
            log.exception("failed")
        log.info("plain %s", "words")  # nothing to hide: the record keeps its template

    assert "k-123" not in caplog.text and "t-456" not in caplog.text
    assert "https://api.example/v1?api_key=***" in caplog.text
    assert "https://x.example/?token=***" in caplog.text
    assert caplog.records[-1].msg == "plain %s"


def test_a_bad_format_does_not_break_the_caller(redacting: None) -> None:
    # Logging reports such mistakes through the handler; the redaction must not raise.
    record = logging.getLogRecordFactory()("n", logging.INFO, "f", 1, "%d", ("x",), None)

    assert record.msg == "%d"


def test_installing_twice_wraps_once(redacting: None) -> None:
    factory = logging.getLogRecordFactory()

    install_log_redaction()

    assert logging.getLogRecordFactory() is factory


def test_step_errors_carry_redacted_urls() -> None:
    with local_server(lambda request: httpx.Response(503, text="down")) as server:
        registry = build_default_registry(Settings(egress_allow=server.authority))
        url = f"http://{server.authority}/x?api_key=K-789"
        try:
            answered = registry.invoke("http.request", {"method": "GET", "url": url}, CTX)
            hook = registry.invoke("webhook.send", {"url": url, "payload": {}}, CTX)
            refused = registry.invoke(
                "http.request", {"method": "GET", "url": "http://u:pw@10.0.0.1/?token=T"}, CTX
            )
        finally:
            registry.close()

    assert answered.error == (
        f"http.request: GET http://{server.authority}/x?api_key=*** answered HTTP 503"
    )
    assert (
        hook.error
        == f"webhook.send: POST http://{server.authority}/x?api_key=*** answered HTTP 503"
    )
    assert refused.error is not None
    assert refused.error.startswith(
        "http.request: GET http://***@10.0.0.1/?token=***: egress_denied"
    )


def test_a_record_keeps_its_template_and_the_shape_of_its_args(redacting: None) -> None:
    # uvicorn's access formatter unpacks record.args: a flattened record would break it.
    make = logging.getLogRecordFactory()
    access = make(
        "uvicorn.access",
        logging.INFO,
        "f",
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/cb?next=https://h/?token=T1", "1.1", 200),
        None,
    )
    named = make("n", logging.INFO, "f", 1, "%(url)s", ({"url": "http://h/?sig=T2"},), None)
    in_template = make("n", logging.INFO, "f", 1, "http://h/?token=%s", ("T3",), None)

    assert access.msg == '%s - "%s %s HTTP/%s" %d'
    assert access.args == ("127.0.0.1:5", "GET", "/cb?next=https://h/?token=***", "1.1", 200)
    assert named.getMessage() == "http://h/?sig=***"
    assert in_template.getMessage() == "http://h/?token=***"
