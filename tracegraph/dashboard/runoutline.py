"""A run's outline for its page: every step and nested span without their attributes, which load on demand.

A run page must stay quick for a run of 10,000 steps, so it reads only the light columns of the trace's spans
(ids, names, times, status, the tracegraph columns) and parses no attribute JSON; the detail panel asks for one
span's attributes and events when it is opened (`Store.span_detail`). A run whose run span has not arrived yet
(it ends last) is outlined from its node spans and is `running`, or `stale` past the store's stale time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ('LIGHT_COLUMNS', 'LightSpan', 'RunOutline', 'StepError', 'build_outline')

LIGHT_COLUMNS = (
    'span_id, parent_span_id, name, start_ns, end_ns, status_code, run_id, node_id, step, outcome, next_node, '
    'is_run, graph, service_name'
)
"""The columns an outline reads, in `LightSpan`'s order."""


@dataclass(slots=True)
class LightSpan:
    """One stored span without its attributes and events."""

    span_id: str
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int
    status: str
    run_id: str | None
    node_id: str | None
    step: int | None
    outcome: str | None
    next_node: str | None
    is_run: bool
    graph: str | None
    service: str | None

    @property
    def duration(self) -> float:
        """Seconds."""
        return max(0, self.end_ns - self.start_ns) / 1e9


@dataclass(kw_only=True)
class StepError:
    """An exception recorded in a run: by a node step, or by a span nested under one (with another message)."""

    step: int | None
    node_id: str | None
    span_id: str
    span_name: str
    type: str
    message: str
    traceback: str
    nested: bool
    """Recorded by a span nested under the step, not by the node span itself."""


@dataclass(kw_only=True)
class RunOutline:
    """What a run page draws: the run, its steps in order, the spans under each step, and its errors."""

    trace_id: str
    run_id: str
    graph: str
    service: str | None
    start_ns: int
    end_ns: int
    outcome: str
    run_span: LightSpan | None
    """None while the run is in progress (its run span ends last)."""
    steps: list[LightSpan]
    children: dict[str, list[LightSpan]]
    """Spans by the id of the span they are nested under (node spans excluded)."""
    errors: list[StepError] = field(default_factory=list[StepError])

    @property
    def duration(self) -> float:
        """Seconds (so far, for a run in progress)."""
        return max(0, self.end_ns - self.start_ns) / 1e9

    def descendants(self, span_id: str) -> list[tuple[LightSpan, int]]:
        """The spans under `span_id` with their depth (1 for a child), depth first in start order."""
        out: list[tuple[LightSpan, int]] = []
        seen: set[str] = set()
        stack = [(child, 1) for child in reversed(self.children.get(span_id, []))]
        while stack:
            span, depth = stack.pop()
            if span.span_id in seen:
                continue
            seen.add(span.span_id)
            out.append((span, depth))
            stack.extend((c, depth + 1) for c in reversed(self.children.get(span.span_id, [])))
        return out


def _pick_run_id(spans: Sequence[LightSpan], run_id: str | None) -> str | None:
    if run_id is not None:
        return run_id if any(s.run_id == run_id for s in spans) else None
    ids = {s.span_id for s in spans}
    runs = [s for s in spans if s.is_run and s.run_id is not None]
    outer = [s for s in runs if s.parent_id not in ids] or runs
    if outer:
        return min(outer, key=lambda s: s.start_ns).run_id
    nodes = [s for s in spans if s.node_id is not None and s.run_id is not None]
    return min(nodes, key=lambda s: s.start_ns).run_id if nodes else None


def build_outline(trace_id: str, spans: Sequence[LightSpan], *, run_id: str | None, stale_ns: int) -> RunOutline | None:
    """The outline of run `run_id` (the outermost run by default) among the spans of trace `trace_id`.

    Args:
        trace_id: the trace, lower-case hex.
        spans: every span of the trace, light.
        run_id: which run; None for the outermost one.
        stale_ns: a run in progress whose last node span ended before this instant is `stale`.
    """
    chosen = _pick_run_id(spans, run_id)
    if chosen is None:
        return None
    run_span = next((s for s in spans if s.is_run and s.run_id == chosen), None)
    steps = sorted(
        (s for s in spans if s.run_id == chosen and s.node_id is not None and not s.is_run),
        key=lambda s: (s.step if s.step is not None else 0, s.start_ns),
    )
    if run_span is None and not steps:
        return None
    children: dict[str, list[LightSpan]] = {}
    for s in spans:
        if s.parent_id is not None and not (s.run_id == chosen and (s.is_run or s.node_id is not None)):
            children.setdefault(s.parent_id, []).append(s)
    if run_span is not None:
        start, end = run_span.start_ns, max([run_span.end_ns, *(s.end_ns for s in steps)])
        outcome = run_span.outcome or ('failed' if run_span.status == 'ERROR' else 'completed')
    else:
        start, end = min(s.start_ns for s in steps), max(s.end_ns for s in steps)
        outcome = 'stale' if end < stale_ns else 'running'
    first = run_span or steps[0]
    return RunOutline(
        trace_id=trace_id,
        run_id=chosen,
        graph=first.graph or '',
        service=first.service,
        start_ns=start,
        end_ns=end,
        outcome=outcome,
        run_span=run_span,
        steps=steps,
        children=children,
    )
