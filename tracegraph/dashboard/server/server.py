"""Running the dashboard: in the foreground (`tracegraph serve`) or in a background thread (tests, `demo`)."""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from ...exporters.settings import http_url
from ..ingest.grpcreceiver import GrpcReceiver
from ..ingest.receiver import DEFAULT_MAX_BODY
from ..store.database import Store
from .app import ServeOptions, create_app
from .connections import ACCEPT_BATCH, KEEP_ALIVE_TIMEOUT, GuardedH11Protocol

__all__ = (
    'DEFAULT_HOST',
    'DEFAULT_PORT',
    'ServerThread',
    'is_loopback',
    'bind_socket',
    'make_server',
    'default_decode_workers',
)

DEFAULT_HOST = '127.0.0.1'
DEFAULT_PORT = 4318
"""The OTLP/HTTP port, so `OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318` reaches the dashboard."""


def default_decode_workers() -> int:
    """One decode process per core beyond the first (0 on a single core)."""
    return max(0, (os.cpu_count() or 1) - 1)


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on `host:port` (`port=0` picks a free one, read it from `getsockname()`)."""
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP, and without
    # it every small reply waits out the client's delayed ACK (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def free_grpc_port(host: str) -> int:
    """A port nobody listens on at `host` now (for `--grpc-port 0`; a later bind may still race)."""
    with bind_socket(host, 0) as sock:
        return int(sock.getsockname()[1])


def make_server(store: Store, options: ServeOptions | None = None, *, log_level: str = 'warning') -> uvicorn.Server:
    """A uvicorn server for the dashboard app over `store`; run it with `server.run(sockets=[...])`."""
    app = create_app(store, options)
    forwarded = list((options or ServeOptions()).forwarded_allow_ips)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan='on',
        timeout_graceful_shutdown=5,
        http=GuardedH11Protocol,  # header-read timeout and connection cap (`connections`)
        backlog=ACCEPT_BATCH,
        timeout_keep_alive=int(KEEP_ALIVE_TIMEOUT),
        proxy_headers=bool(forwarded),  # uvicorn's default believes them from loopback
        forwarded_allow_ips=forwarded or None,
    )
    return uvicorn.Server(config)


@dataclass(kw_only=True)
class ServerThread:
    """The dashboard served from a background thread, e.g. for tests or `tracegraph demo`.

    Example:
        ```python
        from tracegraph.dashboard.server.server import ServerThread

        with ServerThread(db=':memory:') as server:
            print(server.url.startswith('http://127.0.0.1:'))
            #> True
        ```
    """

    db: str | Path = ':memory:'
    host: str = DEFAULT_HOST
    port: int = 0
    """0 picks a free port."""
    token: str | None = None
    retention_days: float | None = None
    max_body: int = DEFAULT_MAX_BODY
    decode_workers: int = 0
    """Processes decoding large span requests; 0 (the default here) decodes in threads."""
    allowed_hosts: Sequence[str] = ()
    """Host names answered besides loopback and IP addresses (see `guards.HostGuard`)."""
    forwarded_allow_ips: Sequence[str] = ()
    """Proxies whose forwarded headers are believed (see `ServeOptions.forwarded_allow_ips`)."""
    stale_after: float = 600.0
    """Seconds after its last node span ended at which a run without its run span is shown as stale."""
    grpc_port: int | None = None
    """Also receive OTLP/gRPC on this port (0: a free one; see `grpc_url`); None: OTLP/HTTP only."""
    startup_timeout: float = 20.0
    store: Store | None = field(default=None, init=False)
    _server: uvicorn.Server | None = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _sock: socket.socket | None = field(default=None, init=False)
    _url: str | None = field(default=None, init=False)
    _grpc: GrpcReceiver | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        """`http://host:port` of the running server."""
        assert self._url is not None, 'the server was never started'
        return self._url

    @property
    def grpc_url(self) -> str:
        """`http://host:port` of the OTLP/gRPC receiver (started with `grpc_port`)."""
        port = self._grpc.bound_port if self._grpc is not None else None
        assert port is not None, 'no OTLP/gRPC receiver is running'
        return http_url(self.host, port)

    def start(self) -> ServerThread:
        """Bind the socket, open the store and serve until `stop()`; waits (bounded) until it answers.

        Raises:
            OSError: the address is taken (nothing is left open then).
            RuntimeError: the server did not start in `startup_timeout` seconds.
        """
        self._sock = bind_socket(self.host, self.port)
        host, port = self._sock.getsockname()[:2]
        self._url = http_url(host, port)
        self._grpc = None if self.grpc_port is None else GrpcReceiver(host=self.host, port=self.grpc_port)
        try:
            self.store = Store(self.db)
        except BaseException:
            self._sock.close()
            self._sock = None
            raise
        options = ServeOptions(
            token=self.token,
            retention_days=self.retention_days,
            max_body=self.max_body,
            decode_workers=self.decode_workers,
            bind_host=self.host,
            allowed_hosts=self.allowed_hosts,
            forwarded_allow_ips=self.forwarded_allow_ips,
            stale_after=self.stale_after,
            grpc=self._grpc,
        )
        self._server = make_server(self.store, options)
        server, sock = self._server, self._sock
        self._thread = threading.Thread(
            target=lambda: server.run(sockets=[sock]), name='tracegraph-dashboard', daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError('The dashboard server did not start.')
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving (bounded wait), then close the store."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=self.startup_timeout)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.store is not None:
            self.store.close()
            self.store = None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
