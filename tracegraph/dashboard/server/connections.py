"""Connection limits of `tracegraph serve`: no idle or slow client holds a connection for long, and the server never
runs out of file descriptors, so `/healthz` and ingest answer while someone holds thousands of connections open.

- A request's headers must arrive within `HEADER_TIMEOUT` seconds of the connection opening (or of the previous
  response): a client that connects and sends nothing, or dribbles its headers (slowloris), is closed.
- After a response, a keep-alive connection that sends no new request is closed after `KEEP_ALIVE_TIMEOUT` seconds
  (uvicorn's `timeout_keep_alive`).
- At most `max_connections()` connections are open at once (4,096, fewer under a lower open-files limit, which
  `serve` raises to its hard limit). A new one beyond it closes the connection that has been
  idle (waiting for a request) longest; when every connection is busy with a request, the new one is answered 503
  and closed. Either is logged once per episode, not per connection.

This is uvicorn's h11 protocol with those timers added (`http=GuardedH11Protocol` in its `Config`); it reads the
protocol's `cycle`, `transport` and `connections`, which the tests exercise against a real server process.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import OrderedDict
from typing import Any, ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = (
    'ACCEPT_BATCH',
    'HEADER_TIMEOUT',
    'KEEP_ALIVE_TIMEOUT',
    'GuardedH11Protocol',
    'max_connections',
    'raise_descriptor_limit',
)

HEADER_TIMEOUT = 10.0
KEEP_ALIVE_TIMEOUT = 5.0
_CAP = 4096
ACCEPT_BATCH = 128
"""The listen backlog, which is also how many connections asyncio accepts in one go: up to about three batches are
accepted before the first of them can be turned away, so the cap leaves room for four."""
_RESERVED_DESCRIPTORS = 128 + 4 * ACCEPT_BATCH
"""Kept free of connections: the store's files, the gRPC receiver, decode workers and logs, and the accept batches."""
_BUSY = b'HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\nretry-after: 1\r\n\r\n'
_log = logging.getLogger('tracegraph.dashboard')


def raise_descriptor_limit() -> None:
    """Raise this process's soft limit of open files to its hard limit (at most 65,536), as servers do."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def max_connections() -> int:
    """How many connections the server keeps open at most: 4,096, or fewer when the open-files limit is lower."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return _CAP
    return max(16, min(_CAP, soft - _RESERVED_DESCRIPTORS))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header-read timeout and a cap on open connections."""

    _cap: ClassVar[int | None] = None
    _episode: ClassVar[bool] = False
    """Whether the cap is being hit now (logged once until the server is below it again)."""

    _idle_by_server: ClassVar[dict[int, OrderedDict[GuardedH11Protocol, None]]] = {}
    """Per server (its set of connections), the connections waiting for a request, longest idle first."""
    _timer: asyncio.TimerHandle | None = None
    _armed_for: Any = None

    def _idle(self) -> OrderedDict[GuardedH11Protocol, None]:
        return self._idle_by_server.setdefault(id(self.connections), OrderedDict())

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._idle()[self] = None
        self._arm()
        cls = GuardedH11Protocol
        if cls._cap is None:
            cls._cap = max_connections()
        if len(self.connections) <= cls._cap:
            if len(self.connections) < cls._cap * 0.9:  # well below it again: the next time is a new episode
                cls._episode = False
            return
        victim = self._longest_idle()
        if not cls._episode:
            cls._episode = True
            _log.warning(
                'tracegraph serve: %d connections open, the most it keeps: %s',
                cls._cap,
                'closing the longest idle ones' if victim is not None else 'answering new ones 503 while all are busy',
            )
        if victim is not None:
            self._idle().pop(victim, None)
            victim.transport.close()
        else:
            transport.write(_BUSY)
            transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not self._armed_for and self._timer is not None:  # a new request's headers arrived
            self._timer.cancel()
            self._timer = None
            self._idle().pop(self, None)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        idle = self._idle()
        idle[self] = None
        idle.move_to_end(self)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        idle = self._idle()
        idle.pop(self, None)
        if len(self.connections) <= 1:  # the server's last connection: forget its registry
            self._idle_by_server.pop(id(self.connections), None)
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_for = self.cycle
        self._timer = self.loop.call_later(HEADER_TIMEOUT, self._headers_late)

    def _headers_late(self) -> None:
        self._timer = None
        if self.cycle is self._armed_for and not self.transport.is_closing():
            self.transport.close()

    def _longest_idle(self) -> GuardedH11Protocol | None:
        for connection in self._idle():
            if connection is not self:
                return connection
        return None
