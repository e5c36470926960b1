"""The parts of a run that was interrupted and resumed, found from any one of them, and their steps on one chart.

A resumed part names the trace it continues in `tracegraph.run.resumed_from` (the trace of the last step it
resumed from) when it runs in a new, linked trace, on its run span and on each node span (so a part still running,
whose run span has not arrived, is found too); with `join_trace=True` it runs in that same trace instead and
names nothing. So the parts of one run are the runs of the same graph in a chain of traces: walking back through
`resumed_from` finds the earlier ones, and the runs naming a trace of the chain the later ones. The walk is
bounded (`MAX_PARTS`), so a corrupt chain cannot make a page read without end.

Every function takes the store's `query` (one SQL statement with `?` parameters) and reads the `spans` table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ...tracing.attributes import RUN_RESUMED_FROM
from ...tracing.clock import ns_to_datetime
from .models import RunRef
from .runoutline import last_step, transitions_of

__all__ = ('MAX_PARTS', 'PartBar', 'PartPath', 'part_bars', 'part_path', 'run_parts')

Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

MAX_PARTS = 100
"""Most parts of one run the walk through its chain of traces collects."""

_RESUMED_FROM = f'json_extract_string(attributes, \'$."{RUN_RESUMED_FROM}"\')'
_COLUMNS = f'trace_id, run_id, graph, start_ns, outcome, steps, end_ns, {_RESUMED_FROM}'
"""A part's `RunRef` fields, then the trace it resumed from."""


def _ended_first(ended: list[tuple[Any, ...]], running: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """`ended`, then the runs of `running` that are not among them: a run span, once it arrived, says it best."""
    have = {(r[0], r[1]) for r in ended}
    first = {(r[0], r[1]): r for r in reversed(running)}  # a first step run again (another attempt): the earliest
    return ended + [r for key, r in first.items() if key not in have]


def _runs_of_traces(query: Query, traces: Sequence[str], graph: str | None) -> list[tuple[Any, ...]]:
    """The runs of `traces`: those whose run span arrived, then those still running, from their first node span."""
    ended = query(
        f'SELECT {_COLUMNS} FROM spans WHERE is_run AND run_id IS NOT NULL AND list_contains(?, trace_id) '
        'AND (? IS NULL OR graph = ?)',
        [list(traces), graph, graph],
    )
    # a run's first node span stands for it until its run span arrives: one row per run, not one per step
    running = query(
        f"SELECT trace_id, run_id, graph, start_ns, 'running', NULL, NULL, {_RESUMED_FROM} FROM spans "
        'WHERE NOT is_run AND step = 1 AND node_id IS NOT NULL AND run_id IS NOT NULL AND list_contains(?, trace_id) '
        'AND (? IS NULL OR graph = ?) ORDER BY start_ns',
        [list(traces), graph, graph],
    )
    return _ended_first(ended, running)


def _runs_resuming(query: Query, traces: Sequence[str], graph: str | None, after_ns: int) -> list[tuple[Any, ...]]:
    """The runs naming one of `traces` as the trace they resumed from: by their run span, or, while they run, by
    their first node span (which carries it too)."""
    # the start bound lets DuckDB skip older row groups before the LIKE and the JSON
    ended = query(
        f'SELECT {_COLUMNS} FROM spans WHERE is_run AND run_id IS NOT NULL AND start_ns >= ? '
        f"AND (? IS NULL OR graph = ?) AND attributes LIKE '%resumed_from%' AND list_contains(?, {_RESUMED_FROM})",
        [after_ns, graph, graph, list(traces)],
    )
    running = query(
        f"SELECT trace_id, run_id, graph, start_ns, 'running', NULL, NULL, {_RESUMED_FROM} FROM spans "
        'WHERE NOT is_run AND step = 1 AND node_id IS NOT NULL AND run_id IS NOT NULL AND start_ns >= ? '
        "AND (? IS NULL OR graph = ?) AND attributes LIKE '%resumed_from%' "
        f'AND list_contains(?, {_RESUMED_FROM}) ORDER BY start_ns',
        [after_ns, graph, graph, list(traces)],
    )
    return _ended_first(ended, running)


def run_parts(
    query: Query, trace_id: str, run_id: str, start_ns: int, graph: str | None
) -> tuple[list[RunRef], list[RunRef]]:
    """The other parts of run `run_id` of trace `trace_id` (started at `start_ns`, of `graph`): those before it
    and those after it, each in start order.

    Parts are runs of the same graph (any graph when `graph` is None) in the traces of the run's chain: the run's
    own trace, the traces it resumed from one after another, and the traces of the runs resuming any of them.
    """
    trace_id = trace_id.lower()
    found: dict[tuple[str, str], tuple[Any, ...]] = {}
    chain = [trace_id]
    backward = [trace_id]
    while backward and len(found) < MAX_PARTS:
        origins: list[str] = []
        for row in _runs_of_traces(query, backward, graph):
            found.setdefault((row[0], row[1]), row)
            origin = str(row[7] or '').lower()
            if origin and origin not in chain and origin not in origins:
                origins.append(origin)
        chain += origins
        backward = origins
    forward = list(chain)  # every trace of the chain so far: a later part may resume any earlier one
    earliest = min((row[3] for row in found.values()), default=start_ns)
    while forward and len(found) < MAX_PARTS:
        resuming = [row for row in _runs_resuming(query, forward, graph, earliest) if (row[0], row[1]) not in found]
        added: list[str] = []
        for row in resuming:
            found[(row[0], row[1])] = row
            trace = str(row[0])
            if trace not in chain:
                chain.append(trace)
                added.append(trace)
        if added:  # a new trace of the chain: its other runs (join_trace parts of the later part) are parts too
            for row in _runs_of_traces(query, added, graph):
                found.setdefault((row[0], row[1]), row)
        forward = added
    found.pop((trace_id, run_id), None)
    earlier: list[RunRef] = []
    later: list[RunRef] = []
    for row in sorted(found.values(), key=lambda r: (r[3], r[0], r[1]))[:MAX_PARTS]:
        ref_trace, ref_run, ref_graph, ref_start, outcome, steps, ref_end, _ = row
        ref = RunRef(
            trace_id=ref_trace, run_id=ref_run, graph=ref_graph, start=ns_to_datetime(ref_start), outcome=outcome,
            steps=steps, end=ns_to_datetime(ref_end) if ref_end is not None else None,
        )  # fmt: skip
        (later if (ref_start, ref_trace, ref_run) > (start_ns, trace_id, run_id) else earlier).append(ref)
    return earlier, later


@dataclass(kw_only=True)
class PartBar:
    """The steps of one node in one part that fall in one bin of the part's time: drawn as one bar."""

    node_id: str
    first: int
    """Index (0-based, in the part's step order) of the bar's first step."""
    last: int
    start_ns: int
    end_ns: int
    count: int
    worst: str
    """`failed`, `interrupted`, `running` or `completed`: the worst outcome among the bar's steps."""
    longest_span: str
    """Span id of the bar's longest step."""


def part_bars(query: Query, trace_id: str, run_id: str, start_ns: int, end_ns: int, bins: int) -> list[PartBar]:
    """The node steps of one part as bars: one per node and per bin, `bins` bins splitting `start_ns`–`end_ns`.

    Consecutive steps of a node in one bin merge into one bar, so a part of 10,000 steps costs at most its nodes
    times `bins` bars, and a part of a few steps one bar per step (when each is in its own bin).
    """
    span = max(1, end_ns - start_ns)
    rows = query(
        'WITH steps AS (SELECT node_id, start_ns, end_ns, outcome, span_id, '
        'row_number() OVER (ORDER BY step NULLS FIRST, start_ns, span_id) - 1 AS i FROM spans '
        'WHERE trace_id = ? AND run_id = ? AND node_id IS NOT NULL AND NOT is_run) '
        'SELECT node_id, least(?, greatest(0, (start_ns - ?) * ? // ?)) AS bin, min(i), max(i), min(start_ns), '
        "max(end_ns), count(*), bool_or(outcome = 'failed'), bool_or(outcome = 'interrupted'), "
        "bool_or(outcome = 'running'), arg_max(span_id, end_ns - start_ns) FROM steps GROUP BY node_id, bin "
        'ORDER BY 3',
        [trace_id.lower(), run_id, bins - 1, start_ns, bins, span],
    )
    return [
        PartBar(
            node_id=r[0], first=r[2], last=r[3], start_ns=r[4], end_ns=r[5], count=r[6],
            worst='failed' if r[7] else 'interrupted' if r[8] else 'running' if r[9] else 'completed',
            longest_span=r[10],
        )
        for r in rows
    ]  # fmt: skip


@dataclass(kw_only=True)
class PartPath:
    """One part's way through the graph: how often its steps took each (node, next node), and its last step's next
    node (None without steps)."""

    transitions: dict[tuple[str, str], int]
    last_next: str | None


def part_path(query: Query, trace_id: str, run_id: str) -> PartPath:
    """The transitions of one part of a resumed run, and where its last step led."""
    key = [trace_id.lower(), run_id]
    last = last_step(query, key, 'spans')
    return PartPath(transitions=transitions_of(query, key, 'spans'), last_next=last.next_node if last else None)
