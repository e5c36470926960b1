"""A run's outline for its page, read so that a run of 10,000 steps costs about what a run of 200 does.

DuckDB does the counting: the page gets the run's totals, an overview of at most `OVERVIEW_BARS` buckets of
consecutive steps, a summary per node, one window of at most `WINDOW` steps with the spans nested under them,
and the exceptions; only those rows become Python objects, and no attribute JSON is parsed but that of the spans
that recorded an exception (the detail panel loads one span's attributes when it is opened). Query execution
releases the GIL, so a big page does not starve the event loop that answers ingest.

The queries read the relation `trace_spans`: the caller registers the light columns of the trace's spans under
that name (one scan of the store's `spans` table per page instead of one per query).

A run whose run span has not arrived yet (it ends last) is outlined from its node spans: `running`, or `stale`
once its last node span ended more than the store's stale time ago.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = (
    'LIGHT_COLUMNS',
    'MAX_DEPTH',
    'OVERVIEW_BARS',
    'SLOWEST',
    'WINDOW',
    'Bucket',
    'LightSpan',
    'NodeSummary',
    'RunOutline',
    'StepError',
    'errors_of',
    'last_step',
    'read_outline',
    'transitions_of',
    'window_of',
)

WINDOW = 200
"""Steps drawn at once on a run page."""
MAX_WINDOW = 1000
"""Most steps a `steps=a-b` window may hold."""
OVERVIEW_BARS = 200
"""Bars of a run's overview strip, at most."""
SLOWEST = 10
"""Longest steps of a run listed on its page."""
MAX_DEPTH = 200
"""Nesting levels under a step drawn on the page (deeper spans are on the trace page)."""
LIGHT_COLUMNS = (
    'span_id, parent_span_id, name, start_ns, end_ns, status_code, run_id, node_id, step, outcome, next_node, '
    'is_run, graph, service_name'
)
"""The columns of a `LightSpan`, in its order."""

Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
_RANGE = re.compile(r'([0-9]{1,9})-([0-9]{1,9})', re.ASCII)


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
class Bucket:
    """Consecutive steps drawn as one bar of the overview: indexes `first`–`last` (0-based, in step order)."""

    first: int
    last: int
    first_step: int | None
    last_step: int | None
    start_ns: int
    end_ns: int
    worst: str
    """`failed`, `interrupted`, `running` or `completed`: the worst outcome among the bucket's steps."""
    longest: float = 0.0
    """Seconds of the bucket's longest step."""


@dataclass(kw_only=True)
class NodeSummary:
    """One node's steps in the run: how many, how many failed, and their median, longest and total seconds."""

    node_id: str
    count: int
    failed: int
    median: float
    longest: float
    total: float
    longest_span: str = ''
    """Span id of the node's longest step in the run."""
    longest_index: int = 0
    """Index (0-based, in step order) of that step."""


@dataclass(kw_only=True)
class StepError:
    """An exception recorded in a run: by a node step, by a span nested under one, or by the run span."""

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
    """What a run page draws: the run, one window of its steps with their nested spans, and its summaries."""

    trace_id: str
    run_id: str
    graph: str
    service: str | None
    start_ns: int
    end_ns: int
    outcome: str
    run_span: LightSpan | None
    """None while the run is in progress (its run span ends last)."""
    total_steps: int
    first: int
    """Index (0-based, in step order) of the window's first step."""
    steps: list[LightSpan]
    """The window's steps."""
    final: LightSpan | None = None
    """The run's last step (in the window or not), None for a run without steps."""
    children: dict[str, list[tuple[LightSpan, int]]] = field(default_factory=dict[str, list[tuple[LightSpan, int]]])
    """Spans nested under each of the window's steps (by its span id), depth first, with their depth (1: a child)."""
    buckets: list[Bucket] = field(default_factory=list[Bucket])
    by_node: list[NodeSummary] = field(default_factory=list[NodeSummary])
    transitions: dict[tuple[str, str], int] = field(default_factory=dict[tuple[str, str], int])
    """How often the run's steps took each (node, next node): its path through the graph (`End` the last next)."""
    slowest: list[tuple[int, LightSpan]] = field(default_factory=list[tuple[int, LightSpan]])
    """The run's `SLOWEST` longest steps, longest first, with their indexes (0-based, in step order)."""
    errors: list[StepError] = field(default_factory=list[StepError])

    @property
    def duration(self) -> float:
        """Seconds (so far, for a run in progress)."""
        return max(0, self.end_ns - self.start_ns) / 1e9

    def critical_path(self, step: LightSpan) -> set[str]:
        """The spans under `step` on its critical path: the ones its end waited for.

        Walking back from a span's end, the child that ended last (before that point) is on the path, and so is,
        before that child started, the child that ended last before then, and so on; then the same inside each of
        them. A child that ran alongside a longer one, and ended earlier, is off the path (Jaeger's definition).
        Every step of a run is on the run's path (a run's steps run one after another).
        """
        kids: dict[str, list[LightSpan]] = {}
        for span, _ in self.children.get(step.span_id, []):
            kids.setdefault(span.parent_id or '', []).append(span)
        on_path: set[str] = set()
        stack = [(step.span_id, step.end_ns)]
        while stack:
            parent, until = stack.pop()
            for child in sorted(kids.get(parent, []), key=lambda s: s.end_ns, reverse=True):
                if child.end_ns <= until and child.span_id not in on_path:
                    on_path.add(child.span_id)
                    stack.append((child.span_id, child.end_ns))
                    until = child.start_ns
        return on_path

    step_offset: int = 0
    """Steps the earlier parts of a resumed run took: this part's steps are numbered on from them."""

    def continue_numbering(self, offset: int) -> None:
        """Number this part's steps on from the `offset` steps of the earlier parts of its run (once)."""
        if self.step_offset or offset <= 0:
            return
        self.step_offset = offset
        spans = {id(s): s for s in [*self.steps, *(s for _, s in self.slowest), *([self.final] if self.final else [])]}
        for span in spans.values():
            if span.step is not None:
                span.step += offset
        for error in self.errors:
            if error.step is not None:
                error.step += offset

    @property
    def last(self) -> int:
        """Index of the window's last step."""
        return self.first + len(self.steps) - 1


_OWN_STEPS = 'trace_id = ? AND run_id = ? AND node_id IS NOT NULL AND NOT is_run'
"""The node spans of one run (parameters: trace id, run id)."""
_STEPS = (
    'WITH steps AS (SELECT *, row_number() OVER (ORDER BY step NULLS FIRST, start_ns, span_id) - 1 AS i '
    f'FROM trace_spans WHERE {_OWN_STEPS}) '
)
"""The run's steps numbered in step order (`i`, from 0), for the queries that need a step's place."""


def _pick_run(query: Query, trace_id: str, run_id: str | None) -> tuple[str, LightSpan | None] | None:
    """The run to outline: `run_id`, or the outermost run of the trace; and its run span if it arrived."""
    runs = [
        LightSpan(*r)
        for r in query(
            f'SELECT {LIGHT_COLUMNS} FROM trace_spans r WHERE trace_id = ? AND is_run AND run_id IS NOT NULL AND '
            '(? IS NULL OR run_id = ?) ORDER BY (parent_span_id IS NOT NULL AND EXISTS (SELECT 1 FROM trace_spans p '
            'WHERE p.trace_id = r.trace_id AND p.span_id = r.parent_span_id)), start_ns LIMIT 1',
            [trace_id, run_id, run_id],
        )
    ]
    if runs:
        return runs[0].run_id or '', runs[0]
    rows = query(
        'SELECT run_id FROM trace_spans WHERE trace_id = ? AND node_id IS NOT NULL AND run_id IS NOT NULL AND '
        '(? IS NULL OR run_id = ?) ORDER BY start_ns LIMIT 1',
        [trace_id, run_id, run_id],
    )
    return (rows[0][0], None) if rows else None


def last_step(query: Query, key: Sequence[Any], relation: str = 'trace_spans') -> LightSpan | None:
    """The last node step (in `_STEPS`' order, without numbering every step) of the run `key` (trace id, run id)
    in `relation`; None without steps."""
    rows = query(
        f'SELECT {LIGHT_COLUMNS} FROM {relation} WHERE {_OWN_STEPS} '
        'ORDER BY step DESC NULLS LAST, start_ns DESC, span_id DESC LIMIT 1',
        key,
    )
    return LightSpan(*rows[0]) if rows else None


def transitions_of(query: Query, key: Sequence[Any], relation: str = 'trace_spans') -> dict[tuple[str, str], int]:
    """How often the node steps of the run `key` (trace id, run id) in `relation` took each (node, next node)."""
    rows = query(
        f'SELECT node_id, next_node, count(*) FROM {relation} WHERE {_OWN_STEPS} AND next_node IS NOT NULL '
        'GROUP BY ALL ORDER BY 3 DESC, 1, 2',
        key,
    )
    return {(r[0], r[1]): r[2] for r in rows}


def window_of(total: int, first_failed: int | None, text: str | None) -> tuple[int, int]:
    """The (first, last) step indexes of the window `text` (`a-b`, step numbers counted from 1, inclusive).

    Without `text`: the first `WINDOW` steps, or the window ending at the first failed step when it lies beyond.

    Raises:
        ValueError: `text` is not `a-b` with `1 <= a <= b`.
    """
    if not text:
        if first_failed is not None and first_failed >= WINDOW:
            return first_failed - WINDOW + 1, first_failed
        return 0, max(0, min(total, WINDOW) - 1)
    match = _RANGE.fullmatch(text)
    if match is None or not 1 <= int(match[1]) <= int(match[2]):
        raise ValueError(f'{text[:40]!r} is not a range of step numbers like 1-200.')
    first = min(int(match[1]) - 1, max(0, total - 1))
    return first, max(first, min(int(match[2]) - 1, total - 1, first + MAX_WINDOW - 1))


def read_outline(
    query: Query, trace_id: str, *, run_id: str | None, window: str | None, stale_ns: int
) -> RunOutline | None:
    """The outline of run `run_id` (the outermost run by default) of trace `trace_id`, or None.

    Args:
        query: runs one SQL statement with `?` parameters where `trace_spans` holds the trace's spans.
        trace_id: the trace, lower-case hex.
        run_id: which run; None for the outermost one.
        window: which steps to draw (`a-b`); None for the default window (see `window_of`).
        stale_ns: a run in progress whose last node span ended before this instant is `stale`.

    Raises:
        ValueError: `window` is not a range of step numbers.
    """
    picked = _pick_run(query, trace_id, run_id)
    if picked is None:
        return None
    chosen, run_span = picked
    key = [trace_id, chosen]
    total, first_start, last_end, first_failed, graph, service = query(
        _STEPS + "SELECT count(*), min(start_ns), max(end_ns), min(i) FILTER (WHERE outcome = 'failed'), "
        'any_value(graph), any_value(service_name) FROM steps',
        key,
    )[0]
    if run_span is None and not total:
        return None
    first, last = window_of(total, first_failed, window)
    steps = [
        LightSpan(*r[:-1])
        for r in query(
            _STEPS + f'SELECT {LIGHT_COLUMNS}, i FROM steps WHERE i BETWEEN ? AND ? ORDER BY i', [*key, first, last]
        )
    ]
    if run_span is not None:
        start, end = run_span.start_ns, max(run_span.end_ns, last_end or run_span.end_ns)
        outcome = run_span.outcome or ('failed' if run_span.status == 'ERROR' else 'completed')
    else:
        start, end = first_start, last_end
        outcome = 'stale' if last_end < stale_ns else 'running'
    first_span = run_span or (steps[0] if steps else None)
    outline = RunOutline(
        trace_id=trace_id,
        run_id=chosen,
        graph=(first_span.graph if first_span else None) or graph or '',
        service=(first_span.service if first_span else None) or service,
        start_ns=start,
        end_ns=end,
        outcome=outcome,
        run_span=run_span,
        total_steps=total,
        first=first,
        steps=steps,
    )
    if steps and last == total - 1:
        outline.final = steps[-1]
    elif total:  # the last in `_STEPS`' order, without numbering every step
        outline.final = last_step(query, key)
    outline.children = _nested(query, trace_id, chosen, steps)
    if total > len(steps):
        outline.buckets = _buckets(query, key, total)
    outline.by_node = [
        NodeSummary(
            node_id=r[0], count=r[1], failed=r[2], median=r[3] / 1e9, longest=r[4] / 1e9, total=r[5] / 1e9,
            longest_span=r[6], longest_index=r[7],
        )
        for r in query(
            _STEPS + "SELECT node_id, count(*), count(*) FILTER (WHERE outcome = 'failed'), "
            'median(end_ns - start_ns), max(end_ns - start_ns), sum(end_ns - start_ns), '
            'arg_max(span_id, end_ns - start_ns), arg_max(i, end_ns - start_ns) FROM steps '
            'GROUP BY node_id ORDER BY 6 DESC, 1',
            key,
        )
    ]  # fmt: skip
    outline.transitions = transitions_of(query, key)
    if total > 1:
        outline.slowest = [
            (r[-1], LightSpan(*r[:-1]))
            for r in query(
                _STEPS + f'SELECT {LIGHT_COLUMNS}, i FROM steps ORDER BY end_ns - start_ns DESC, i LIMIT ?',
                [*key, SLOWEST],
            )
        ]
    return outline


def _buckets(query: Query, key: list[Any], total: int) -> list[Bucket]:
    per = -(-total // OVERVIEW_BARS)
    rows = query(
        _STEPS + 'SELECT i // ? AS b, min(i), max(i), min(step), max(step), min(start_ns), max(end_ns), '
        "bool_or(outcome = 'failed'), bool_or(outcome = 'interrupted'), bool_or(outcome = 'running'), "
        'max(end_ns - start_ns) FROM steps GROUP BY b ORDER BY b',
        [*key, per],
    )
    return [
        Bucket(
            first=r[1], last=r[2], first_step=r[3], last_step=r[4], start_ns=r[5], end_ns=r[6],
            worst='failed' if r[7] else 'interrupted' if r[8] else 'running' if r[9] else 'completed',
            longest=r[10] / 1e9,
        )
        for r in rows
    ]  # fmt: skip


def _nested(
    query: Query, trace_id: str, run_id: str, steps: Sequence[LightSpan]
) -> dict[str, list[tuple[LightSpan, int]]]:
    """The spans under each step, depth first in start order, found by a recursive query bounded in depth."""
    if not steps:
        return {}
    rows = query(
        'WITH RECURSIVE tree(span_id, root, depth, path) AS ('
        '  SELECT span_id, parent_span_id, 1, [start_ns] FROM trace_spans'
        '  WHERE trace_id = ? AND list_contains(?, parent_span_id)'
        '  AND NOT (run_id IS NOT DISTINCT FROM ? AND (is_run OR node_id IS NOT NULL))'
        '  UNION ALL'
        '  SELECT s.span_id, t.root, t.depth + 1, list_append(t.path, s.start_ns) FROM trace_spans s JOIN tree t'
        '  ON s.trace_id = ? AND s.parent_span_id = t.span_id WHERE t.depth < ?'
        ') '
        f'SELECT {", ".join("s." + c.strip() for c in LIGHT_COLUMNS.split(","))}, t.root, t.depth FROM tree t '
        'JOIN trace_spans s ON s.trace_id = ? AND s.span_id = t.span_id ORDER BY t.root, t.path, s.span_id',
        [trace_id, [s.span_id for s in steps], run_id, trace_id, MAX_DEPTH, trace_id],
    )
    nested: dict[str, list[tuple[LightSpan, int]]] = {}
    seen: set[str] = set()
    for r in rows:
        if r[0] in seen:  # a span reached twice (a cycle or repeated ids from a broken sender): drawn once
            continue
        seen.add(r[0])
        nested.setdefault(r[-2], []).append((LightSpan(*r[:-2]), r[-1]))
    return nested


def errors_of(query: Query, outline: RunOutline) -> list[StepError]:
    """The run's exceptions, each once: the node's own, then nested spans' with another type or message.

    Reads the `events` of the spans in `trace_spans` that recorded an exception (the caller keeps that column for
    them only); the step a nested one belongs to is found by walking up its parents (a bounded recursive query).
    """
    failing = query(
        'SELECT span_id, run_id, name, is_run, node_id, step, events FROM trace_spans '
        'WHERE events IS NOT NULL ORDER BY start_ns, span_id LIMIT 500',
        [],
    )
    found: list[tuple[bool, int, StepError]] = []
    for order, (span_id, span_run, name, is_run, node_id, step_no, events_json) in enumerate(failing):
        events: list[dict[str, Any]] = json.loads(events_json)
        own_node = node_id is not None and span_run == outline.run_id and not is_run
        is_run_span = is_run and span_run == outline.run_id
        step: tuple[int | None, str | None] | None = None
        if own_node:
            step = (step_no, node_id)
        elif not is_run_span:
            step = _enclosing_step(query, outline, span_id)
            if step is None:
                continue
        for ev in events:
            if ev.get('name') != 'exception':
                continue
            attrs: dict[str, Any] = ev.get('attributes') or {}
            nested = not own_node and not is_run_span
            error = StepError(
                step=step[0] if step else None, node_id=step[1] if step else None, span_id=span_id, span_name=name,
                type=str(attrs.get('exception.type', '')), message=str(attrs.get('exception.message', '')),
                traceback=str(attrs.get('exception.stacktrace', '')), nested=nested,
            )  # fmt: skip
            found.append((nested or is_run_span, order, error))
    kept: list[StepError] = []
    seen_in_step: set[tuple[int | None, str, str]] = set()
    seen_anywhere: set[tuple[str, str]] = set()
    for _, _, error in sorted(found, key=lambda f: (f[0], f[1])):
        what = (error.type, error.message)
        if (error.step, *what) in seen_in_step or (error.step is None and what in seen_anywhere):
            continue  # the same failure recorded again by an enclosing or an enclosed span
        seen_in_step.add((error.step, *what))
        seen_anywhere.add(what)
        kept.append(error)
    return sorted(kept, key=lambda e: (e.step if e.step is not None else 1 << 62, e.nested))


def _enclosing_step(query: Query, outline: RunOutline, span_id: str) -> tuple[int | None, str | None] | None:
    rows = query(
        'WITH RECURSIVE up(span_id, parent, depth) AS ('
        '  SELECT span_id, parent_span_id, 0 FROM trace_spans WHERE trace_id = ? AND span_id = ?'
        '  UNION ALL'
        '  SELECT s.span_id, s.parent_span_id, u.depth + 1 FROM trace_spans s JOIN up u'
        '  ON s.trace_id = ? AND s.span_id = u.parent WHERE u.depth < ?'
        ') SELECT s.step, s.node_id FROM up JOIN trace_spans s ON s.trace_id = ? AND s.span_id = up.span_id '
        'WHERE up.depth > 0 AND s.run_id = ? AND s.node_id IS NOT NULL AND NOT s.is_run ORDER BY up.depth LIMIT 1',
        [outline.trace_id, span_id, outline.trace_id, MAX_DEPTH, outline.trace_id, outline.run_id],
    )
    return (rows[0][0], rows[0][1]) if rows else None
