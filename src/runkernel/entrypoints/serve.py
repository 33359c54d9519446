"""Running the HTTP API (uvicorn) and a WorkerPool in one process.

Two shapes share one order of shutdown — stop taking requests first, then drain the pool —
so a run accepted by the API is either finished or released for another worker, never
stranded halfway:

- :func:`serve_forever` blocks the main thread until SIGTERM or SIGINT (``runkernel serve``,
  ``runkernel api``).
- :class:`BackgroundServer` runs uvicorn in a thread on an already bound socket, so the
  caller knows the URL before it starts (``runkernel demo``, tests).

Both listen on a socket bound before anything else starts: a port already in use fails the
process before a worker could claim a run.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import TYPE_CHECKING

import uvicorn

from runkernel.bootstrap import Kernel
from runkernel.entrypoints.background import BackgroundServices
from runkernel.entrypoints.worker import WorkerPool
from runkernel.errors import ConfigurationError

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _build_app(kernel: Kernel) -> FastAPI:
    # Imported late: the API package pulls in FastAPI, which commands like `worker` and
    # `db upgrade` never need.
    from runkernel.entrypoints.api import create_app

    return create_app(kernel)


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket; ``port=0`` picks a free one (read it from ``getsockname``).

    A port in use or an address that cannot be bound is a ConfigurationError naming it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigurationError(
                f"port {port} is in use on {host}: stop what listens there or pass --port",
                code="port_in_use",
            ) from exc
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", code="cannot_listen"
        ) from exc
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server minus its own signal handling.

    uvicorn re-raises a captured SIGTERM after it stops, which would kill the process
    before the worker pool could drain; here the caller owns the signals instead."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def serve_forever(
    kernel: Kernel,
    sock: socket.socket,
    *,
    pool: WorkerPool | None = None,
    log_level: str = "info",
) -> None:
    """Serve the API on ``sock`` (bound by :func:`bind_socket`, so a taken port failed
    before this) and run ``pool`` with the background loops, when given, until SIGTERM or
    SIGINT; then stop uvicorn (in-flight requests finish) and drain the pool. A second
    signal while stopping makes uvicorn drop open connections at once."""
    server = _Server(uvicorn.Config(_build_app(kernel), log_level=log_level))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if server.should_exit:
            log.warning("%s again: closing connections without waiting", name)
            server.force_exit = True
        else:
            log.info("%s: stopping the API, then draining the worker pool", name)
            server.should_exit = True

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    # With a pool this is the whole embedded kernel: relay and audit sweep included.
    background = BackgroundServices(kernel, holder=pool.worker_id) if pool is not None else None
    try:
        if pool is not None and background is not None:
            pool.start()
            background.start()
        server.run(sockets=[sock])
    finally:
        if pool is not None and background is not None:
            pool.stop()
            background.stop()
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class BackgroundServer:
    """uvicorn in a daemon thread plus, optionally, a worker pool: the embedded kernel
    inside another program. Use as a context manager; leaving it stops both."""

    def __init__(
        self,
        kernel: Kernel,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        pool: WorkerPool | None = None,
        log_level: str = "warning",
    ) -> None:
        self.kernel = kernel
        self.pool = pool
        self.background = (
            BackgroundServices(kernel, holder=pool.worker_id) if pool is not None else None
        )
        self._socket = bind_socket(host, port)
        bound_host, bound_port = self._socket.getsockname()[:2]
        self.url = f"http://{bound_host}:{bound_port}"
        self._server = _Server(
            uvicorn.Config(_build_app(kernel), log_level=log_level, lifespan="on")
        )
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="rk-uvicorn",
            daemon=True,
        )

    def start(self, timeout_s: float = 10.0) -> BackgroundServer:
        if self.pool is not None:
            self.pool.start()
        if self.background is not None:
            self.background.start()
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the API did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self, drain_timeout_s: float | None = None) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
        if self.pool is not None:
            self.pool.stop(drain_timeout_s)
        if self.background is not None:
            self.background.stop()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
