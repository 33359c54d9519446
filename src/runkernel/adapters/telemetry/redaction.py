"""Secrets out of logs: URLs are logged without their user-info and secret-looking query
parameters (``https://***@host/p?token=***``).

:func:`redact_text` is the one redaction function. Skills use it on the step errors they
write; :func:`install_log_redaction` applies it to every log record of the process,
httpx's own ``HTTP Request: …`` lines included.

It hooks the log record factory rather than adding a filter to handlers, because handlers
come and go after startup (uvicorn configures its own loggers when a server starts,
``basicConfig(force=True)`` replaces the root's) and a filter on a handler that is gone
protects nothing; the factory sees every record of every logger, whatever handles it.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable
from typing import Any

MASK = "***"

# A URL runs until whitespace or a character that ends it in prose, JSON or repr().
_URL = re.compile(r"""[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s"'<>`]+""")
# Whole words of a parameter name (``api_key``, ``apiKey``, ``X-Amz-Signature``).
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_SECRET_WORDS = frozenset(
    {"key", "sig", "auth", "pwd", "pass", "jwt", "session", "sessionid", "credential"}
)
# Matched anywhere in the name, so ``accesstoken`` and ``client_secret`` are caught too.
_SECRET_PARTS = ("token", "secret", "passw", "apikey", "signature", "credential", "auth")


def is_secret_name(name: str) -> bool:
    """True when a query parameter called ``name`` probably carries a secret.

    Over-redacting a harmless parameter (``author``) costs a log reader little; missing a
    secret one leaks it, so the match is generous."""
    flat = re.sub(r"[^a-z0-9]", "", name.lower())
    if any(part in flat for part in _SECRET_PARTS):
        return True
    return any(word.lower() in _SECRET_WORDS for word in _WORD.findall(name))


def _redact_pairs(pairs: str) -> str:
    out = []
    for pair in pairs.split("&"):
        name, eq, _value = pair.partition("=")
        out.append(f"{name}={MASK}" if eq and is_secret_name(name) else pair)
    return "&".join(out)


def redact_url(url: str) -> str:
    """``url`` with user-info and secret-named query (and fragment) values masked; the rest
    is kept byte for byte, so a redacted URL still shows which endpoint was called."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    cut = len(rest)
    for stop in "/?#":
        index = rest.find(stop)
        if index != -1:
            cut = min(cut, index)
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        authority = f"{MASK}@{authority.rsplit('@', 1)[1]}"
    tail, hash_, fragment = tail.partition("#")
    path, question, query = tail.partition("?")
    if question:
        query = _redact_pairs(query)
    if hash_ and "=" in fragment:
        fragment = _redact_pairs(fragment)
    return f"{scheme}://{authority}{path}{question}{query}{hash_}{fragment}"


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted by :func:`redact_url`."""
    if "://" not in text:
        return text
    return _URL.sub(lambda match: redact_url(match.group(0)), text)


def _redact_arg(arg: object) -> object:
    if arg is None or isinstance(arg, int | float):
        return arg  # a %d or %f must still get a number
    text = str(arg)
    redacted = redact_text(text)
    return arg if redacted == text else redacted


def _redact_record(record: logging.LogRecord) -> None:
    """Redact in place. The args are redacted one by one, so a record keeps its template
    and shape (uvicorn's access formatter unpacks ``args``; tools group lines by template);
    only a secret the template itself carries (``"…?token=%s"``) flattens the message."""
    if isinstance(record.args, tuple):
        record.args = tuple(_redact_arg(arg) for arg in record.args)
    elif isinstance(record.args, dict):
        record.args = {key: _redact_arg(value) for key, value in record.args.items()}
    try:
        message = record.getMessage()
    # A message whose args do not fit its format must fail where logging reports such
    # errors (the handler's handleError), not in the caller's log statement.
    except Exception:  # noqa: BLE001
        return
    redacted = redact_text(message)
    if redacted != message:
        record.msg, record.args = redacted, ()
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        # Formatters use exc_text when it is set: the traceback is redacted once, here.
        record.exc_text = redact_text(
            "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        )


def _redacting(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        _redact_record(record)
        return record

    make_record.runkernel_redacting = True  # type: ignore[attr-defined]
    return make_record


def install_log_redaction() -> None:
    """Redact every log record created from now on, in this process. Idempotent."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "runkernel_redacting", False):
        return
    logging.setLogRecordFactory(_redacting(factory))
