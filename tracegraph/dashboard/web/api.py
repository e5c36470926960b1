"""The JSON API: runs, one run's detail, graphs, per-node statistics and edges.

Every handler runs its query in a worker thread so a slow query never stalls ingest.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

import anyio.to_thread
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from ..store.database import Store
from ..store.models import RunDetail, RunPage, SpanInfo, parse_duration, parse_since, parse_time
from ..store.runquery import ATTR_KEY, RUN_KINDS, RUN_OUTCOMES, SORTS, Cursor, RunQuery
from ..store.runstate import state_at

__all__ = (
    'ApiError',
    'Api',
    'MAX_LIMIT',
    'query_limit',
    'query_time',
    'query_text',
    'path_text',
    'path_trace_id',
    'page_links',
    'runs_query',
    'Readers',
    'stored_run',
)

MAX_LIMIT = 1000
MAX_TEXT = 1000
"""Longest text parameter (a graph, run id or outcome) accepted."""
_T = TypeVar('_T')
_DIGITS = re.compile(r'[0-9]{1,7}', re.ASCII)
_TRACE_ID = re.compile(r'[0-9a-fA-F]{32}', re.ASCII)
_SPAN_ID = re.compile(r'[0-9a-fA-F]{16}', re.ASCII)


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


def _path_hex(request: Request, name: str, pattern: re.Pattern[str], digits: int) -> str:
    text: str = request.path_params[name]
    if not pattern.fullmatch(text):
        shown = text if len(text) <= 64 else text[:64] + '…'
        raise ApiError(400, f'{name} must be {digits} hexadecimal digits, got {shown!r}.')
    return text.lower()


def path_trace_id(request: Request) -> str:
    """The `{trace_id}` of the path: 32 hexadecimal digits (any case; stored lower-case)."""
    return _path_hex(request, 'trace_id', _TRACE_ID, 32)


def path_span_id(request: Request) -> str:
    """The `{span_id}` of the path: 16 hexadecimal digits (any case; stored lower-case)."""
    return _path_hex(request, 'span_id', _SPAN_ID, 16)


def stored_run(store: Store, trace_id: str, run_id: str | None) -> RunDetail:
    """The run `GET /api/runs/{trace_id}` and `/runs/{trace_id}` show, or a 404 `ApiError`."""
    detail = store.run(trace_id, run_id=run_id)
    if detail is None:
        raise ApiError(404, f'No run found in trace {trace_id!r}.')
    return detail


def stored_trace(store: Store, trace_id: str) -> list[SpanInfo]:
    """The spans `GET /api/traces/{trace_id}` and `/traces/{trace_id}` show (depth first), or a 404 `ApiError`."""
    spans = store.trace_spans(trace_id)
    if not spans:
        raise ApiError(404, f'No spans found in trace {trace_id!r}.')
    return spans


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


def _cursor(request: Request, name: str) -> Cursor | None:
    text = request.query_params.get(name)
    if not text:
        return None
    try:
        return Cursor.parse(text)
    except ValueError as exc:
        raise ApiError(400, f'{name} must be a page cursor: {exc}') from None


def _choice(request: Request, name: str, choices: tuple[str, ...]) -> str | None:
    text = query_text(request, name)
    if text is not None and text not in choices:
        raise ApiError(400, f'{name} must be one of {", ".join(choices)}, got {text[:80]!r}.')
    return text


def _duration(request: Request, name: str) -> float | None:
    text = request.query_params.get(name)
    if not text:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ApiError(400, f'{name} must be a duration: {exc}') from None


def _attrs(request: Request) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for text in request.query_params.getlist('attr'):
        if not text:
            continue
        key, sep, value = _bounded('attr', text).partition('=')
        if not sep or not ATTR_KEY.fullmatch(key):
            raise ApiError(
                400,
                'attr must be key=value with a key of letters, digits and _.:/@- (e.g. attr=user.id=42), '
                f'got {text[:80]!r}.',
            )
        pairs.append((key, value))
    return tuple(pairs)


def _edge(request: Request) -> tuple[str, str] | None:
    text = query_text(request, 'edge')
    if text is None:
        return None
    source, sep, target = text.partition('->')
    if not sep or not source or not target:
        raise ApiError(400, f'edge must be SOURCE->TARGET, two node ids (e.g. edge=Fetch->End), got {text[:80]!r}.')
    return source, target


def runs_query(request: Request, *, stale_after: float = 600.0) -> RunQuery:
    """The runs-list query of the request's parameters, shared by `GET /api/runs` and the runs page.

    Parameters: `graph`, `service`, `outcome`, `kind` (`run`, `trace`), `since` / `until` (a duration back from
    now or a timestamp; `before` is the older name of `until`), `min_duration` / `max_duration` (`250ms`, `2s`),
    `node`, `edge` (`SOURCE->TARGET`), `attr=key=value` (repeatable), `q` (a trace id, a run id, or part of a
    graph name), `sort` (`start`,
    `duration`), `limit`, and `older` / `newer` (the cursors of the page links).
    """
    older, newer = _cursor(request, 'older'), _cursor(request, 'newer')
    if older is not None and newer is not None:
        raise ApiError(400, 'pass older or newer, not both.')
    until = query_time(request, 'until', relative=True) or query_time(request, 'before', relative=True)
    sort = _choice(request, 'sort', SORTS) or 'start'
    kind = _choice(request, 'kind', RUN_KINDS)
    return RunQuery(
        graph=query_text(request, 'graph'),
        service=query_text(request, 'service'),
        outcome=_choice(request, 'outcome', RUN_OUTCOMES),
        kind='run' if kind == 'run' else 'trace' if kind == 'trace' else None,
        since=query_time(request, 'since', relative=True),
        until=until,
        min_duration=_duration(request, 'min_duration'),
        max_duration=_duration(request, 'max_duration'),
        node=query_text(request, 'node'),
        edge=_edge(request),
        attrs=_attrs(request),
        search=query_text(request, 'q'),
        sort='duration' if sort == 'duration' else 'start',
        limit=query_limit(request),
        older=older,
        newer=newer,
        stale_after=stale_after,
    )


def page_links(request: Request, page: RunPage) -> dict[str, str]:
    """URLs of the newer and older pages of `page` (same path and filters), by `newer` / `older`."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in ('older', 'newer')]
    links: dict[str, str] = {}
    for name, token in (('newer', page.newer), ('older', page.older)):
        if token is not None:
            links[name] = f'{request.url.path}?{urlencode([*kept, (name, token)])}'
    return links


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
    stale_after: float = 600.0
    """Seconds after which a run without its run span is listed as stale."""

    async def runs(self, request: Request) -> Response:
        """`GET /api/runs?...`: a page of runs (see `runs_query` for the filters), newest first.

        The body is the list of runs; the `Link` header holds the older (`rel="next"`) and newer (`rel="prev"`)
        pages, as RFC 8288 web links.
        """
        query = runs_query(request, stale_after=self.stale_after)

        def answer() -> Response:
            page = self.store.run_page(query)
            response = _json(page.runs)
            links = page_links(request, page)
            rels = {'older': 'next', 'newer': 'prev'}
            if links:
                response.headers['Link'] = ', '.join(f'<{url}>; rel="{rels[name]}"' for name, url in links.items())
            return response

        return await self.readers.run(answer)

    async def run(self, request: Request) -> Response:
        """`GET /api/runs/{trace_id}?run_id=`: the run's `NodeTimeline` and the spans nested under each node."""
        trace_id, run_id = path_trace_id(request), query_text(request, 'run_id')
        return await self.readers.run(lambda: _json(stored_run(self.store, trace_id, run_id)))

    async def run_steps(self, request: Request) -> Response:
        """`GET /api/runs/{trace_id}/steps.csv?run_id=`: one CSV row per step of the run (`NodeTimeline.to_csv`),
        its steps numbered through the whole run as on its page (a resumed part's on from its earlier parts')."""
        trace_id, run_id = path_trace_id(request), query_text(request, 'run_id')

        def answer() -> Response:
            detail = stored_run(self.store, trace_id, run_id)
            timeline = detail.timeline
            if offset := sum(ref.steps or 0 for ref in detail.resumed_from):
                nodes = [n.model_copy(update={'step': n.step + offset}) for n in timeline.nodes]
                timeline = timeline.model_copy(update={'nodes': nodes})
            name = re.sub(r'[^A-Za-z0-9._-]+', '_', f'{timeline.graph}-{timeline.run_id}')[:120]
            headers = {'Content-Disposition': f'attachment; filename="{name}.csv"'}
            return Response(timeline.to_csv(), media_type='text/csv; charset=utf-8', headers=headers)

        return await self.readers.run(answer)

    async def run_state(self, request: Request) -> Response:
        """`GET /api/runs/{trace_id}/state?run_id=&step=N`: the run's state after step N (see `runstate`)."""
        trace_id, run_id, step_text = path_trace_id(request), query_text(request, 'run_id'), query_text(request, 'step')
        if run_id is None:
            raise ApiError(400, 'run_id is required: the run whose state to rebuild.')
        if step_text is None or not _DIGITS.fullmatch(step_text) or int(step_text) < 1:
            raise ApiError(400, f'step must be a step number (1 or more, ASCII digits), got {step_text!r}.')

        def answer() -> Response:
            found = state_at(self.store.query, trace_id, run_id, int(step_text))
            if found is None:
                raise ApiError(404, f'Run {run_id!r} of trace {trace_id!r} has no step {step_text}.')
            return Response(json.dumps(dataclasses.asdict(found), default=str), media_type='application/json')

        return await self.readers.run(answer)

    async def trace(self, request: Request) -> Response:
        """`GET /api/traces/{trace_id}`: every span of the trace as a tree (depth first, with `depth`)."""
        trace_id = path_trace_id(request)

        return await self.readers.run(lambda: _json(stored_trace(self.store, trace_id)))

    async def span(self, request: Request) -> Response:
        """`GET /api/traces/{trace_id}/spans/{span_id}`: one span's attributes and events, its parent and children."""
        trace_id, span_id = path_trace_id(request), path_span_id(request)

        def answer() -> Response:
            detail = self.store.span_detail(trace_id, span_id)
            if detail is None:
                raise ApiError(404, f'No span {span_id!r} in trace {trace_id!r}.')
            return _json(detail)

        return await self.readers.run(answer)

    async def graphs(self, request: Request) -> Response:
        """`GET /api/graphs`: name, runs and last seen of every graph."""
        return await self.readers.run(lambda: _json(self.store.graphs()))

    async def nodes(self, request: Request) -> Response:
        """`GET /api/graphs/{graph}/nodes?since=`: per-node count, error rate, p50/p95/p99 seconds."""
        graph = path_text(request, 'graph')
        since = query_time(request, 'since', relative=True)
        return await self.readers.run(lambda: _json(self.store.node_stats(graph, since=since)))

    async def totals(self, request: Request) -> Response:
        """`GET /api/graphs/{graph}/totals?since=`: `runs`, `failed` and `total` seconds of the graph's runs."""
        graph = path_text(request, 'graph')
        since = query_time(request, 'since', relative=True)

        def answer() -> Response:
            runs, failed, total = self.store.run_totals(graph, since=since)
            return Response(json.dumps({'runs': runs, 'failed': failed, 'total': total}), media_type='application/json')

        return await self.readers.run(answer)

    async def timeseries(self, request: Request) -> Response:
        """`GET /api/graphs/{graph}/timeseries?since=&until=&node=`: runs (or the node's steps) per time bucket."""
        graph = path_text(request, 'graph')
        node = query_text(request, 'node')
        since = query_time(request, 'since', relative=True)
        until = query_time(request, 'until', relative=True)
        return await self.readers.run(lambda: _json(self.store.timeseries(graph, node=node, since=since, until=until)))

    async def edges(self, request: Request) -> Response:
        """`GET /api/graphs/{graph}/edges?since=`: source, target and count of each transition seen."""
        graph = path_text(request, 'graph')
        since = query_time(request, 'since', relative=True)
        return await self.readers.run(lambda: _json(self.store.edges(graph, since=since)))
