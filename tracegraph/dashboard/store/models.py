"""The shapes the store returns and the JSON API sends: runs, graphs, node statistics, edges, a run's detail."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import BaseModel

from ...tracing.timeline import NodeTimeline

__all__ = (
    'RunSummary',
    'RunPage',
    'GraphSummary',
    'NodeStats',
    'Transition',
    'TimeBucket',
    'SpanEvent',
    'SpanInfo',
    'NodeSpans',
    'SpanRef',
    'SpanDetail',
    'RunDetail',
    'RunRef',
    'parse_time',
    'parse_since',
    'parse_duration',
)


class RunSummary(BaseModel):
    """One row of the runs list (`GET /api/runs`): a graph run, finished or not, or a plain trace."""

    trace_id: str
    run_id: str
    """The run's id; for a plain trace, its root span's id."""
    graph: str
    start: datetime
    duration: float
    """Seconds (so far, for a run in progress)."""
    steps: int | None
    outcome: str
    """`completed`, `failed`, `interrupted`; `running` or `stale` for a run whose run span has not arrived."""
    kind: str = 'run'
    """`run` (a graph run) or `trace` (a trace of other instrumentation, no graph in it)."""
    service: str | None = None
    """`service.name` of the resource that sent it."""
    name: str | None = None
    """The root span's name, for a plain trace."""


class RunPage(BaseModel):
    """A page of the runs list and the cursors of the pages around it (None at either end)."""

    runs: list[RunSummary]
    newer: str | None
    older: str | None


class GraphSummary(BaseModel):
    """A graph seen in the store, as listed by `GET /api/graphs`."""

    name: str
    runs: int
    last_seen: datetime


class NodeStats(BaseModel):
    """Duration statistics of one node of a graph, as listed by `GET /api/graphs/{graph}/nodes`."""

    node_id: str
    count: int
    error_rate: float
    """Share of the node's steps that failed, 0 to 1."""
    p50: float
    p95: float
    p99: float
    total: float
    """Seconds spent in the node over all its steps."""


class Transition(BaseModel):
    """A transition seen between two nodes (`target` is `End` when the run ended there)."""

    source: str
    target: str
    count: int


class TimeBucket(BaseModel):
    """One time bucket of a graph's runs (or a node's steps): how many, by outcome, and duration percentiles."""

    start: datetime
    width: float
    """Seconds the bucket covers."""
    count: int
    completed: int
    failed: int
    interrupted: int
    p50: float
    p95: float
    p99: float

    @property
    def error_rate(self) -> float:
        """Failed / all, 0 to 1."""
        return self.failed / self.count if self.count else 0.0


class SpanEvent(BaseModel):
    """An event recorded on a span, e.g. an `exception` with its stack trace."""

    name: str
    time: datetime
    attributes: dict[str, Any]


class SpanInfo(BaseModel):
    """A stored span, as shown on the run page."""

    span_id: str
    parent_span_id: str | None
    name: str
    start: datetime
    end: datetime
    duration: float
    status: str
    """`UNSET`, `OK` or `ERROR`."""
    status_message: str | None
    depth: int
    """Nesting depth below the node span (1 = a direct child); 0 for the run and node spans themselves."""
    attributes: dict[str, Any]
    events: list[SpanEvent]


class SpanRef(BaseModel):
    """Another span of the trace, by id and name (a parent or a child in a span's detail)."""

    span_id: str
    name: str


class SpanDetail(BaseModel):
    """One span with every attribute and event, and the spans around it (`GET /api/traces/{t}/spans/{s}`)."""

    trace_id: str
    span: SpanInfo
    parent: SpanRef | None
    children: list[SpanRef]


class NodeSpans(BaseModel):
    """A node step's own span and the spans nested under it, in start order."""

    step: int
    node_id: str
    span: SpanInfo
    children: list[SpanInfo]


class RunRef(BaseModel):
    """Another part of a run interrupted and resumed (`iter_from_persistence`, or a `history=` resume)."""

    trace_id: str
    run_id: str
    graph: str | None
    start: datetime
    outcome: str | None
    steps: int | None = None
    """The part's node steps (`tracegraph.run.steps` of its run span), None while it runs."""
    end: datetime | None = None
    """When the part's run span ended."""


class RunDetail(BaseModel):
    """One run as served by `GET /api/runs/{trace_id}`: its `NodeTimeline` and the spans behind it."""

    timeline: NodeTimeline
    """Exactly the shared model; `NodeTimeline.model_validate(detail['timeline'])` rebuilds it."""
    run_span: SpanInfo
    nodes: list[NodeSpans]
    """One per entry of `timeline.nodes`, same order."""
    other_spans: list[SpanInfo]
    """Spans of the trace under no node step of this run (e.g. a parent of the run span)."""
    resumed_from: list[RunRef] = []
    """The earlier parts this run continues: the runs of the trace it names in `tracegraph.run.resumed_from`, and
    the earlier runs of its own trace when it was resumed with `join_trace=True`."""
    resumed_by: list[RunRef] = []
    """The later parts that continue this run, in this trace or linking to it."""


_RELATIVE = re.compile(r'^\s*([0-9]{1,12}(?:\.[0-9]{1,9})?)\s*(s|m|h|d|w)\s*$', re.ASCII)
_UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}
MAX_LOOKBACK_DAYS = 36_500
"""Longest duration `since` accepts (100 years): anything longer reaches before any stored span anyway."""


def parse_time(text: str) -> datetime:
    """An ISO 8601 timestamp (naive means UTC).

    Raises:
        ValueError: with a message naming the problem.
    """
    cleaned = text.strip().replace('Z', '+00:00')
    try:
        if not cleaned.isascii():
            raise ValueError
        value = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(f'{text!r} is not an ISO 8601 timestamp such as 2026-01-02T03:04:05Z.') from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """A `since` bound: a duration back from now (`30m`, `6h`, `7d`, `2w`) or an ISO 8601 timestamp.

    Raises:
        ValueError: with a message naming the problem.
    """
    match = _RELATIVE.match(text)
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
        if seconds > MAX_LOOKBACK_DAYS * 86400:
            raise ValueError(f'{text!r} reaches back more than {MAX_LOOKBACK_DAYS} days.')
        return (now or datetime.now(timezone.utc)) - timedelta(seconds=seconds)
    try:
        return parse_time(text)
    except ValueError:
        raise ValueError(f'{text!r} is neither a duration like 30m, 6h, 7d nor an ISO 8601 timestamp.') from None


_DURATION = re.compile(r'^\s*([0-9]{1,12}(?:\.[0-9]{1,9})?)\s*(us|µs|ms|s|m|h|d)?\s*$')
_DURATION_UNITS = {'us': 1e-6, 'µs': 1e-6, 'ms': 1e-3, 's': 1.0, 'm': 60.0, 'h': 3600.0, 'd': 86400.0}


def parse_duration(text: str) -> float:
    """Seconds of a duration such as `250ms`, `2s`, `1.5m`, `1h` or `800us` (a bare number is seconds).

    Raises:
        ValueError: with a message naming the problem.
    """
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f'{text!r} is not a duration such as 250ms, 2s, 1.5m or 1h.')
    return float(match.group(1)) * _DURATION_UNITS[match.group(2) or 's']
