"""`tracegraph report`: per-graph, per-node performance figures from a dashboard store or a JSON Lines span file."""

from __future__ import annotations

import importlib
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from ..presentation.text import count_text, format_duration
from .store.columns import arrow
from .store.database import Store
from .store.models import GraphSummary, NodeStats, RunSummary

__all__ = (
    'GraphReport',
    'NodeReport',
    'Report',
    'build_report',
    'load_span_file',
    'render_report',
    'report_rows',
    'report_csv',
    'write_report',
)

NODE_ROW_FIELDS = ('graph', 'node_id', 'count', 'error_rate', 'p50', 'p95', 'p99', 'total', 'share')
"""Columns of the report's table form (CSV, Parquet): one row per graph and node; seconds and fractions."""


class NodeReport(NodeStats):
    """A node's figures, with its share of the graph's total run time."""

    share: float
    """Fraction (0 to 1) of the graph's summed run durations spent in this node's steps."""


class GraphReport(BaseModel):
    """One graph: its runs, their total time, its nodes and its slowest runs."""

    graph: str
    runs: int
    failed_runs: int
    total_run_time: float
    """Seconds, summed over runs."""
    nodes: list[NodeReport]
    slowest: list[RunSummary]


class Report(BaseModel):
    """What `tracegraph report` shows (and prints with `--json`)."""

    source: str
    since: datetime | None
    graphs: list[GraphReport]


class ReportSource(Protocol):
    """What the report reads: a `Store`, or a `RemoteStore` reading a running dashboard's."""

    def graphs(self) -> list[GraphSummary]: ...
    def run_totals(self, graph: str, *, since: datetime | None = None) -> tuple[int, int, float]: ...
    def node_stats(self, graph: str, *, since: datetime | None = None) -> list[NodeStats]: ...
    def runs(
        self, *, graph: str | None = None, since: datetime | None = None, limit: int = 50, sort: str = 'start'
    ) -> list[RunSummary]: ...


def build_report(store: ReportSource, *, source: str, graph: str | None = None, since: datetime | None = None,
                 slowest: int = 5) -> Report:  # fmt: skip
    """Collect the report's figures from `store`.

    Args:
        store: where the spans are.
        source: what to call the store in the report (a path).
        graph: only this graph.
        since: only runs and steps that started at or after this instant.
        slowest: how many of the slowest runs to list per graph.
    """
    names = [g.name for g in store.graphs() if graph is None or g.name == graph]
    graphs: list[GraphReport] = []
    for name in names:
        runs, failed, total = store.run_totals(name, since=since)
        if not runs:
            continue
        nodes = [
            NodeReport(**stats.model_dump(), share=(stats.total / total) if total else 0.0)
            for stats in store.node_stats(name, since=since)
        ]
        graphs.append(
            GraphReport(
                graph=name,
                runs=runs,
                failed_runs=failed,
                total_run_time=total,
                nodes=nodes,
                slowest=store.runs(graph=name, since=since, limit=slowest, sort='duration') if slowest else [],
            )
        )
    return Report(source=source, since=since, graphs=graphs)


def load_span_file(path: Path) -> Store:
    """An in-memory store holding the spans of a JSON Lines span file written by the exporters' `file=` option.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: a line is not a span (the error names the line).
    """
    from ..exporters.local.jsonlines import read_trace_requests
    from .ingest.otlp import span_batch

    store = Store(':memory:')
    for request in read_trace_requests(path):  # each line is already a request the receiver reads: no detour
        store.insert_spans(span_batch(request))
    return store


def report_rows(report: Report) -> list[dict[str, object]]:
    """One dict per graph and node (keys: `NODE_ROW_FIELDS`), for CSV, Parquet and DataFrames."""
    return [{'graph': g.graph, **n.model_dump(include=set(NODE_ROW_FIELDS))} for g in report.graphs for n in g.nodes]


def report_csv(report: Report) -> str:
    """The report's node rows as CSV, with a header line."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list[str](NODE_ROW_FIELDS), lineterminator='\n')
    writer.writeheader()
    writer.writerows(report_rows(report))
    return out.getvalue()


def write_report(report: Report, fmt: str, path: Path) -> None:
    """Write the report to `path` as `json` (all of it), `csv` or `parquet` (its node rows)."""
    if fmt == 'json':
        path.write_text(report.model_dump_json(indent=2) + '\n')
    elif fmt == 'csv':
        path.write_text(report_csv(report))
    else:
        parquet: Any = importlib.import_module('pyarrow.parquet')  # untyped; the dashboard extra installs it
        rows = report_rows(report)
        parquet.write_table(arrow().table({name: [r[name] for r in rows] for name in NODE_ROW_FIELDS}), path)


def render_report(report: Report, console: Console) -> None:
    """Print the report as Rich tables: one per graph, then its slowest runs."""
    if not report.graphs:
        console.print(
            f'no graph runs in {report.source}' + (f' since {report.since:%Y-%m-%d %H:%M}' if report.since else '')
        )
        return
    for g in report.graphs:
        summary = f'{count_text(g.runs, "run")}, {g.failed_runs} failed, {format_duration(g.total_run_time)} in all'
        table = Table(title=f'[bold]{g.graph}[/]  {summary}', title_justify='left')
        for column in ('node', 'count', 'errors', 'p50', 'p95', 'p99', 'share of run time'):
            table.add_column(column, justify='left' if column == 'node' else 'right')
        for n in g.nodes:
            errors = f'[red]{n.error_rate:.1%}[/]' if n.error_rate else '0%'
            table.add_row(
                n.node_id, str(n.count), errors, format_duration(n.p50), format_duration(n.p95),
                format_duration(n.p99), f'{n.share:.1%}',
            )  # fmt: skip
        console.print(table)
        slow = Table(title='slowest runs', title_justify='left', show_edge=False, box=None)
        for column in ('trace id', 'duration', 'steps', 'outcome', 'started'):
            slow.add_column(column)
        for r in g.slowest:
            slow.add_row(
                r.trace_id,
                format_duration(r.duration),
                str(r.steps or 0),
                r.outcome or '-',
                f'{r.start:%Y-%m-%d %H:%M:%S}',
            )
        console.print(slow)
        console.print()
