"""A graph's figures from the stored spans: per node, per transition, and over time (time-bucketed in DuckDB).

Every function takes the store's `query` (one SQL statement with `?` parameters) and reads plain columns, but
`declared_edges`, which reads one run span's attribute.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

from ...tracing.attributes import GRAPH_EDGES
from ...tracing.clock import datetime_to_ns, ns_to_datetime
from .models import NodeStats, TimeBucket, Transition

__all__ = ('BUCKET_WIDTHS', 'declared_edges', 'edges', 'node_stats', 'run_totals', 'timeseries')

Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

BUCKET_WIDTHS = tuple(
    s * 10**9 for s in (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
)
"""Bucket widths (ns) a time series may use: the narrowest that keeps it within `max_buckets`."""


def _since_ns(since: datetime | None) -> int:
    return datetime_to_ns(since) if since else 0


def run_totals(query: Query, graph: str, *, since: datetime | None = None) -> tuple[int, int, float]:
    """Of the runs of `graph` started since `since`: how many, how many failed, and their summed seconds."""
    runs, failed, total_ns = query(
        "SELECT count(*), count(*) FILTER (WHERE outcome = 'failed'), coalesce(sum(end_ns - start_ns), 0) "
        'FROM spans WHERE is_run AND graph = ? AND start_ns >= ?',
        [graph, _since_ns(since)],
    )[0]
    return int(runs), int(failed), total_ns / 1e9


def node_stats(query: Query, graph: str, *, since: datetime | None = None) -> list[NodeStats]:
    """Per node of `graph`: step count, error rate and duration percentiles (seconds), by average step."""
    rows = query(
        "SELECT node_id, count(*), avg(CASE WHEN outcome = 'failed' THEN 1.0 ELSE 0.0 END), "
        'quantile_cont(end_ns - start_ns, [0.5, 0.95, 0.99]), sum(end_ns - start_ns) '
        'FROM spans WHERE graph = ? AND node_id IS NOT NULL AND start_ns >= ? '
        'GROUP BY node_id ORDER BY avg(step), node_id',
        [graph, _since_ns(since)],
    )
    return [
        NodeStats(
            node_id=r[0], count=r[1], error_rate=float(r[2]), p50=r[3][0] / 1e9, p95=r[3][1] / 1e9,
            p99=r[3][2] / 1e9, total=r[4] / 1e9,
        )
        for r in rows
    ]  # fmt: skip


def edges(query: Query, graph: str, *, since: datetime | None = None) -> list[Transition]:
    """Transitions seen in `graph` (node -> the node it returned, `End` included), most frequent first; then the
    edges its latest run declared (`tracegraph.graph.edges`) that no stored step took, with a count of 0."""
    rows = query(
        'SELECT node_id, next_node, count(*) FROM spans '
        'WHERE graph = ? AND node_id IS NOT NULL AND next_node IS NOT NULL AND start_ns >= ? '
        'GROUP BY ALL ORDER BY 3 DESC, 1, 2',
        [graph, _since_ns(since)],
    )
    seen = [Transition(source=r[0], target=r[1], count=r[2]) for r in rows]
    taken = {(t.source, t.target) for t in seen}
    never = [
        Transition(source=source, target=target, count=0)
        for source, target in declared_edges(query, graph)
        if (source, target) not in taken
    ]
    return seen + never


def declared_edges(query: Query, graph: str, *, run_span: tuple[str, str] | None = None) -> list[tuple[str, str]]:
    """The (node, next node) pairs the graph's latest run declared (or the run whose run span is `run_span`, a
    (trace id, span id)), in its node order; none when no stored run span carries them (or what it carries is not
    the JSON tracegraph writes)."""
    extract = f'json_extract_string(attributes, \'$."{GRAPH_EDGES}"\')'
    if run_span is not None:
        rows = query(f'SELECT {extract} FROM spans WHERE trace_id = ? AND span_id = ?', list(run_span))
    else:
        rows = query(
            f'SELECT {extract} FROM spans WHERE graph = ? AND is_run AND contains(attributes, \'"{GRAPH_EDGES}"\') '
            'ORDER BY start_ns DESC LIMIT 1',
            [graph],
        )
    if not rows or not isinstance(rows[0][0], str):
        return []
    try:
        declared = json.loads(rows[0][0])
    except ValueError:
        return []
    if not isinstance(declared, dict):
        return []
    return [
        (str(source), str(target))
        for source, targets in cast('dict[Any, Any]', declared).items()
        if isinstance(targets, list)
        for target in cast('list[Any]', targets)
    ]


def timeseries(
    query: Query,
    graph: str,
    *,
    node: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    max_buckets: int = 60,
) -> list[TimeBucket]:
    """Runs of `graph` (or steps of its `node`) per time bucket: counts by outcome and duration percentiles.

    The bucket width is the narrowest of `BUCKET_WIDTHS` that covers the time range (`since`–`until`, else the
    stored runs' first and last start) in at most `max_buckets` buckets; buckets without runs are left out.
    """
    where = 'graph = ? AND ' + ('node_id = ? AND NOT is_run' if node is not None else 'is_run')
    params: list[Any] = [graph, *([node] if node is not None else [])]
    low, high = _since_ns(since), datetime_to_ns(until) if until else None
    bounds = query(
        f'SELECT min(start_ns), max(start_ns) FROM spans WHERE {where} AND start_ns >= ? AND start_ns < ?',
        [*params, low, high if high is not None else 1 << 62],
    )[0]
    if bounds[0] is None:
        return []
    first = low if since else bounds[0]
    last = high if high is not None else bounds[1]
    span = max(1, last - first)
    width = next((w for w in BUCKET_WIDTHS if span / w <= max_buckets), BUCKET_WIDTHS[-1])
    origin = first // width * width
    rows = query(
        f'SELECT (start_ns - ?) // ? AS b, count(*), '
        "count(*) FILTER (WHERE outcome = 'completed'), count(*) FILTER (WHERE outcome = 'failed'), "
        "count(*) FILTER (WHERE outcome = 'interrupted'), quantile_cont(end_ns - start_ns, [0.5, 0.95, 0.99]) "
        f'FROM spans WHERE {where} AND start_ns >= ? AND start_ns <= ? GROUP BY b ORDER BY b',
        [origin, width, *params, first, last],
    )
    return [
        TimeBucket(
            start=ns_to_datetime(origin + r[0] * width), width=width / 1e9, count=r[1], completed=r[2], failed=r[3],
            interrupted=r[4], p50=r[5][0] / 1e9, p95=r[5][1] / 1e9, p99=r[5][2] / 1e9,
        )
        for r in rows
    ]  # fmt: skip
