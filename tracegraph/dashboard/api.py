"""The JSON API: runs, one run's detail, graphs, per-node statistics and edges.

Every handler runs its query in a worker thread so a slow query never stalls ingest.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import anyio.to_thread
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from .models import RunDetail, parse_since, parse_time
from .store import Store

__all__ = (
    'ApiError',
    'Api',
    'MAX_LIMIT',
    'query_limit',
    'query_time',
    'query_text',
    'path_text',
    'path_trace_id',
    'Readers',
    'stored_run',
)

MAX_LIMIT = 1000
MAX_TEXT = 1000
"""Longest text parameter (a graph, run id or outcome) accepted."""
_T = TypeVar('_T')
_DIGITS = re.compile(r'[0-9]{1,7}', re.ASCII)
_TRACE_ID = re.compile(r'[0-9a-fA-F]{32}', re.ASCII)


class ApiError(Exception):
    """A request answered with an error: `{"detail": message}` on the API, an HTML page on pages (see `app`)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def query_limit(request: Request, default: int = 50) -> int:
    """The `limit` query parameter, 1 to `MAX_LIMIT`."""
    text = request.query_params.get('limit')
    if text is None or text == '':
        return default
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_LIMIT:
        raise ApiError(400, f'limit must be a whole number from 1 to {MAX_LIMIT} in ASCII digits, got {text!r}.')
    return int(text)


def _bounded(name: str, text: str) -> str:
    if len(text) > MAX_TEXT:
        raise ApiError(400, f'{name} must be at most {MAX_TEXT} characters, got {len(text)}.')
    return text


def query_text(request: Request, name: str) -> str | None:
    """A free-text query parameter (empty means absent), at most `MAX_TEXT` characters."""
    text = request.query_params.get(name) or None
    return None if text is None else _bounded(name, text)


def path_text(request: Request, name: str) -> str:
    """A free-text path parameter (a graph name), at most `MAX_TEXT` characters."""
    return _bounded(name, request.path_params[name])


def path_trace_id(request: Request) -> str:
    """The `{trace_id}` of the path: 32 hexadecimal digits (any case; stored lower-case)."""
    text: str = request.path_params['trace_id']
    if not _TRACE_ID.fullmatch(text):
        shown = text if len(text) <= 64 else text[:64] + '…'
        raise ApiError(400, f'trace_id must be 32 hexadecimal digits, got {shown!r}.')
    return text.lower()


def stored_run(store: Store, trace_id: str, run_id: str | None) -> RunDetail:
    """The run `GET /api/runs/{trace_id}` and `/runs/{trace_id}` show, or a 404 `ApiError`."""
    detail = store.run(trace_id, run_id=run_id)
    if detail is None:
        raise ApiError(404, f'No run found in trace {trace_id!r}.')
    return detail


@dataclass
class Readers:
    """Runs one app's queries and rendering in worker threads, so its event loop keeps serving ingest and health.

    One at a time: rendering is Python work that holds the GIL, and every reader running at once would take that
    much more of it from the event loop and the decoding of ingest; readers queue instead. One per app (the
    limiter belongs to the event loop that first uses it).
    """

    _limiter: anyio.CapacityLimiter | None = None

    async def run(self, fn: Callable[[], _T]) -> _T:
        """`fn()` in a worker thread, after the readers before it."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter)


def query_time(request: Request, name: str, *, relative: bool = False) -> datetime | None:
    """A timestamp query parameter (`since` also takes a duration back from now, e.g. `6h`)."""
    text = request.query_params.get(name)
    if not text:
        return None
    accepted = 'a duration back from now (30m, 6h, 7d, 2w) or an ISO 8601 timestamp' if relative else 'ISO 8601'
    try:
        return parse_since(text) if relative else parse_time(text)
    except (ValueError, OverflowError) as exc:
        raise ApiError(400, f'{name} must be {accepted}: {exc}') from None


def _json(value: Any) -> Response:
    if isinstance(value, BaseModel):
        return Response(value.model_dump_json(), media_type='application/json')
    items: list[Any] = value
    body = '[' + ','.join(v.model_dump_json() for v in items) + ']'
    return Response(body, media_type='application/json')


@dataclass(kw_only=True)
class Api:
    """Handlers of `/api/...` reading `store`."""

    store: Store
    readers: Readers

    async def runs(self, request: Request) -> Response:
        """`GET /api/runs?graph=&outcome=&limit=&before=&since=`: runs, newest first."""
        graph = query_text(request, 'graph')
        outcome = query_text(request, 'outcome')
        limit = query_limit(request)
        before = query_time(request, 'before')
        since = query_time(request, 'since', relative=True)
        return await self.readers.run(
            lambda: _json(self.store.runs(graph=graph, outcome=outcome, limit=limit, before=before, since=since))
        )

    async def run(self, request: Request) -> Response:
        """`GET /api/runs/{trace_id}?run_id=`: the run's `NodeTimeline` and the spans nested under each node."""
        trace_id, run_id = path_trace_id(request), query_text(request, 'run_id')
        return await self.readers.run(lambda: _json(stored_run(self.store, trace_id, run_id)))

    async def graphs(self, request: Request) -> Response:
        """`GET /api/graphs`: name, runs and last seen of every graph."""
        return await self.readers.run(lambda: _json(self.store.graphs()))

    async def nodes(self, request: Request) -> Response:
        """`GET /api/graphs/{graph}/nodes?since=`: per-node count, error rate, p50/p95/p99 seconds."""
        graph = path_text(request, 'graph')
        since = query_time(request, 'since', relative=True)
        return await self.readers.run(lambda: _json(self.store.node_stats(graph, since=since)))

    async def edges(self, request: Request) -> Response:
        """`GET /api/graphs/{graph}/edges?since=`: source, target and count of each transition seen."""
        graph = path_text(request, 'graph')
        since = query_time(request, 'since', relative=True)
        return await self.readers.run(lambda: _json(self.store.edges(graph, since=since)))
