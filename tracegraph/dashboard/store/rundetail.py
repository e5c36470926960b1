"""Assembling a run's detail from the stored spans of its trace: the shared `NodeTimeline` plus nested spans."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import StatusCode

from ...tracing.clock import ns_to_datetime
from ...tracing.timeline import NodeTimeline
from .models import NodeSpans, RunDetail, SpanEvent, SpanInfo

__all__ = ('StoredSpan', 'build_run_detail', 'span_tree')


@dataclass(frozen=True, kw_only=True)
class _Context:
    trace_id: int
    span_id: int


@dataclass(frozen=True, kw_only=True)
class _Status:
    status_code: StatusCode


@dataclass(frozen=True, kw_only=True)
class _Event:
    name: str
    attributes: Mapping[str, Any]


@dataclass(kw_only=True)
class StoredSpan:
    """A span read back from the store; it offers what `NodeTimeline.from_spans` reads (`FinishedSpan`)."""

    trace_hex: str
    span_hex: str
    parent_hex: str | None
    name: str
    start_ns: int
    end_ns: int
    status_name: str
    status_message: str | None
    attrs: dict[str, Any]
    event_list: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    run_id: str | None = None
    node_id: str | None = None
    is_run: bool = False

    @property
    def context(self) -> _Context:
        return _Context(trace_id=int(self.trace_hex, 16), span_id=int(self.span_hex, 16))

    @property
    def attributes(self) -> Mapping[str, Any]:
        return self.attrs

    @property
    def start_time(self) -> int:
        return self.start_ns

    @property
    def end_time(self) -> int:
        return self.end_ns

    @property
    def status(self) -> _Status:
        return _Status(status_code=StatusCode[self.status_name])

    @property
    def events(self) -> Sequence[_Event]:
        return [_Event(name=str(e.get('name', '')), attributes=e.get('attributes') or {}) for e in self.event_list]

    def info(self, depth: int) -> SpanInfo:
        """This span as the API shows it."""
        return SpanInfo(
            span_id=self.span_hex,
            parent_span_id=self.parent_hex,
            name=self.name,
            start=ns_to_datetime(self.start_ns),
            end=ns_to_datetime(self.end_ns),
            duration=(self.end_ns - self.start_ns) / 1e9,
            status=self.status_name,
            status_message=self.status_message,
            depth=depth,
            attributes=self.attrs,
            events=[
                SpanEvent(
                    name=str(e.get('name', '')),
                    time=ns_to_datetime(int(e.get('time_ns') or 0)),
                    attributes=e.get('attributes') or {},
                )
                for e in self.event_list
            ],
        )


def _pick_run(spans: Sequence[StoredSpan], run_id: str | None) -> StoredSpan | None:
    runs = [s for s in spans if s.is_run and (run_id is None or s.run_id == run_id)]
    if not runs:
        return None
    ids = {s.span_hex for s in spans}
    # Without a run id, the outermost run: a sub-graph run started by a node nests under its parent run.
    outer = [s for s in runs if s.parent_hex not in ids]
    return min(outer or runs, key=lambda s: s.start_ns)


def build_run_detail(spans: Sequence[StoredSpan], *, run_id: str | None = None) -> RunDetail | None:
    """The detail of one run among the spans of its trace; None when there is no such run.

    Args:
        spans: every stored span of the trace, in start order.
        run_id: which run when the trace holds several; the outermost one by default.
    """
    run_span = _pick_run(spans, run_id)
    if run_span is None or run_span.run_id is None:
        return None
    own = [s for s in spans if s.run_id == run_span.run_id and (s.is_run or s.node_id is not None)]
    timeline = NodeTimeline.from_spans(own, run_id=run_span.run_id)
    own_ids = {s.span_hex for s in own}
    children: dict[str, list[StoredSpan]] = {}
    for s in spans:
        if s.span_hex not in own_ids and s.parent_hex is not None:
            children.setdefault(s.parent_hex, []).append(s)

    placed: set[str] = set(own_ids)

    def descendants(span_hex: str) -> list[SpanInfo]:
        return _depth_first([(child, 1) for child in children.get(span_hex, [])], children, placed)

    by_id = {s.span_hex: s for s in own}
    nodes: list[NodeSpans] = []
    for record in timeline.nodes:
        node_span = by_id.get(record.span_id or '')
        if node_span is None:  # pragma: no cover - every record comes from a stored span
            continue
        nodes.append(
            NodeSpans(
                step=record.step,
                node_id=record.node_id,
                span=node_span.info(0),
                children=descendants(node_span.span_hex),
            )
        )
    others = [s.info(0) for s in spans if s.span_hex not in placed]
    return RunDetail(timeline=timeline, run_span=run_span.info(0), nodes=nodes, other_spans=others)


def span_tree(spans: Sequence[StoredSpan]) -> list[SpanInfo]:
    """`spans` (one trace's, in start order) as a tree: roots then their descendants, depth first, iteratively.

    A span whose parent is not among `spans` is a root (its parent may not have arrived).
    """
    ids = {s.span_hex for s in spans}
    children: dict[str, list[StoredSpan]] = {}
    roots: list[StoredSpan] = []
    for s in spans:
        if s.parent_hex is not None and s.parent_hex in ids and s.parent_hex != s.span_hex:
            children.setdefault(s.parent_hex, []).append(s)
        else:
            roots.append(s)
    placed: set[str] = set()
    out = _depth_first([(root, 0) for root in roots], children, placed)
    out.extend(s.info(0) for s in spans if s.span_hex not in placed)  # cycles: shown flat rather than lost
    return out


def _depth_first(
    starts: list[tuple[StoredSpan, int]], children: Mapping[str, list[StoredSpan]], placed: set[str]
) -> list[SpanInfo]:
    """`starts` (with their depths) and the spans under them, depth first in start order, each once (`placed`
    grows); iterative, as a trace may nest spans deeply."""
    out: list[SpanInfo] = []
    stack = list(reversed(starts))
    while stack:
        span, depth = stack.pop()
        if span.span_hex in placed:
            continue
        placed.add(span.span_hex)
        out.append(span.info(depth))
        stack.extend((c, depth + 1) for c in reversed(children.get(span.span_hex, [])))
    return out
