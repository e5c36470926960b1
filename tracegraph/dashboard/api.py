"""The JSON API: runs, one run's detail, graphs, per-node statistics and edges.

Every handler runs its query in a worker thread so a slow query never stalls ingest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import anyio.to_thread
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .models import parse_since, parse_time
from .store import Store

__all__ = ('ApiError', 'Api', 'MAX_LIMIT', 'query_limit', 'query_time')

MAX_LIMIT = 1000
_T = TypeVar('_T')


class ApiError(Exception):
    """A bad API request; answered with `status` and `{"detail": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def query_limit(request: Request, default: int = 50) -> int:
    """The `limit` query parameter, 1 to `MAX_LIMIT`."""
    text = request.query_params.get('limit')
    if text is None or text == '':
        return default
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ApiError(400, f'limit must be an integer from 1 to {MAX_LIMIT}, got {text!r}.')
    return int(text)


def query_time(request: Request, name: str, *, relative: bool = False) -> datetime | None:
    """A timestamp query parameter (`since` also takes a duration back from now, e.g. `6h`)."""
    text = request.query_params.get(name)
    if not text:
        return None
    try:
        return parse_since(text) if relative else parse_time(text)
    except ValueError as exc:
        raise ApiError(400, f'{name}: {exc}') from None


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

    async def _call(self, fn: Callable[[], _T]) -> _T:
        return await anyio.to_thread.run_sync(fn)

    async def runs(self, request: Request) -> Response:
        """`GET /api/runs?graph=&outcome=&limit=&before=&since=`: runs, newest first."""
        graph = request.query_params.get('graph') or None
        outcome = request.query_params.get('outcome') or None
        limit = query_limit(request)
        before = query_time(request, 'before')
        since = query_time(request, 'since', relative=True)
        return _json(
            await self._call(
                lambda: self.store.runs(graph=graph, outcome=outcome, limit=limit, before=before, since=since)
            )
        )

    async def run(self, request: Request) -> Response:
        """`GET /api/runs/{trace_id}?run_id=`: the run's `NodeTimeline` and the spans nested under each node."""
        trace_id: str = request.path_params['trace_id']
        run_id = request.query_params.get('run_id') or None
        detail = await self._call(lambda: self.store.run(trace_id, run_id=run_id))
        if detail is None:
            raise ApiError(404, f'No run found in trace {trace_id!r}.')
        return _json(detail)

    async def graphs(self, request: Request) -> Response:
        """`GET /api/graphs`: name, runs and last seen of every graph."""
        return _json(await self._call(self.store.graphs))

    async def nodes(self, request: Request) -> Response:
        """`GET /api/graphs/{graph}/nodes?since=`: per-node count, error rate, p50/p95/p99 seconds."""
        graph: str = request.path_params['graph']
        since = query_time(request, 'since', relative=True)
        return _json(await self._call(lambda: self.store.node_stats(graph, since=since)))

    async def edges(self, request: Request) -> Response:
        """`GET /api/graphs/{graph}/edges?since=`: source, target and count of each transition seen."""
        graph: str = request.path_params['graph']
        since = query_time(request, 'since', relative=True)
        return _json(await self._call(lambda: self.store.edges(graph, since=since)))


async def api_error_handler(request: Request, exc: Exception) -> Response:
    """Turn an `ApiError` into its JSON reply."""
    assert isinstance(exc, ApiError)
    return JSONResponse({'detail': exc.message}, status_code=exc.status)
