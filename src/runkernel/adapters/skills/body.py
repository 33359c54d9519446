"""Reading a response body without ever holding more than a limit of it.

The limit counts *decoded* bytes: a few kilobytes of gzip can inflate to gigabytes, so
decompression is done here, chunk by chunk with ``max_length``, instead of by httpx (which
inflates each network chunk whole). Only the encodings the guarded client asks for
(``gzip``, ``deflate``) are accepted; a server that sends another fails the step.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

import httpx

from runkernel.errors import SkillError

ACCEPT_ENCODING = "gzip, deflate"
LIMIT_SETTING = "RUNKERNEL_MAX_STEP_OUTPUT_BYTES"


class BodyTooLargeError(SkillError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the response body is larger than {limit} bytes, the limit set by {LIMIT_SETTING}"
        )


def read_limited(response: httpx.Response, limit: int) -> bytes:
    """The decoded body of a streamed ``response``, at most ``limit`` bytes; over that it
    stops reading and raises :class:`BodyTooLargeError`. The caller closes the response."""
    declared = response.headers.get("content-length", "")
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if declared.isdigit() and int(declared) > limit and encoding == "identity":
        raise BodyTooLargeError(limit)  # said so up front: nothing needs to be read
    chunks, size = [], 0
    for chunk in _decoded(response.iter_raw(), encoding, limit):
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _decoded(raw: Iterable[bytes], encoding: str, limit: int) -> Iterator[bytes]:
    if encoding in ("identity", ""):
        yield from raw
    elif encoding in ("gzip", "x-gzip", "deflate"):
        yield from _inflate(raw, encoding, limit)
    else:
        raise SkillError(f"the response has content-encoding {encoding!r}; accepted: gzip, deflate")


def _inflate(raw: Iterable[bytes], encoding: str, limit: int) -> Iterator[bytes]:
    """Decompressed pieces, together at most ``limit + 1`` bytes (one over tells the caller
    the body is too large without inflating the rest)."""
    inflater: zlib._Decompress | None = None
    produced = 0
    try:
        for data in raw:
            if inflater is None and data:
                inflater = _inflater_for(encoding, data)
            while data and inflater is not None:
                piece = inflater.decompress(data, limit + 1 - produced)
                produced += len(piece)
                yield piece
                if produced > limit:
                    return
                data = inflater.unconsumed_tail
        if inflater is not None:
            yield inflater.flush()
    except zlib.error as exc:
        raise SkillError(f"the response body does not decompress: {exc}") from exc


def _inflater_for(encoding: str, first_chunk: bytes) -> zlib._Decompress:
    if encoding != "deflate":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    # "deflate" is zlib-wrapped by the RFC and raw deflate from some servers; tell them
    # apart by the first bytes, as httpx does.
    try:
        zlib.decompressobj(zlib.MAX_WBITS).decompress(first_chunk, 1)
    except zlib.error:
        return zlib.decompressobj(-zlib.MAX_WBITS)
    return zlib.decompressobj(zlib.MAX_WBITS)
