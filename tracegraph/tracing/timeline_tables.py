"""A `NodeTimeline` as data for analysis: rows, CSV, an Arrow table, a pandas DataFrame.

`NodeTimeline.rows()`, `.to_csv()`, `.to_arrow()` and `.to_pandas()` call these; how a timeline looks is
`tracegraph.presentation`.
"""

from __future__ import annotations

import csv
import importlib
import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .timeline import NodeTimeline

__all__ = (
    'ROW_FIELDS',
    'optional_module',
    'timeline_arrow',
    'timeline_csv',
    'timeline_pandas',
    'timeline_rows',
)

ROW_FIELDS = (
    'graph', 'run_id', 'trace_id', 'step', 'node_id', 'span_id', 'start', 'end', 'duration', 'outcome',
    'next_node', 'error_type', 'error_message',
)  # fmt: skip
"""The columns of `rows()`, `to_arrow()` and `to_pandas()`: one row per node step."""


def timeline_rows(timeline: NodeTimeline) -> list[dict[str, Any]]:
    """One dict per node step, with the run's graph, run id and trace id on each (keys: `ROW_FIELDS`)."""
    return [
        {
            'graph': timeline.graph,
            'run_id': timeline.run_id,
            'trace_id': timeline.trace_id,
            'step': n.step,
            'node_id': n.node_id,
            'span_id': n.span_id,
            'start': n.start,
            'end': n.end,
            'duration': n.duration,
            'outcome': n.outcome,
            'next_node': n.next_node,
            'error_type': n.error.type if n.error else None,
            'error_message': n.error.message if n.error else None,
        }
        for n in timeline.nodes
    ]


def timeline_csv(timeline: NodeTimeline) -> str:
    """`timeline_rows` as CSV with a header row (`ROW_FIELDS`): times in ISO 8601, durations in seconds."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list[str](ROW_FIELDS), lineterminator='\n')
    writer.writeheader()
    for row in timeline_rows(timeline):
        writer.writerow({k: v.isoformat() if hasattr(v, 'isoformat') else v for k, v in row.items()})
    return out.getvalue()


def optional_module(module: str, who: str) -> Any:
    """`module` (pyarrow, pandas), or an `ImportError` saying which install brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{who} needs {module} for this: pip install 'tracegraph[dashboard]' {module}") from e


def timeline_arrow(timeline: NodeTimeline) -> Any:
    """The steps as a `pyarrow.Table` (columns `ROW_FIELDS`; times as UTC timestamps, durations in seconds)."""
    pa = optional_module('pyarrow', 'NodeTimeline')
    rows = timeline_rows(timeline)
    types = {
        'step': pa.int32(),
        'start': pa.timestamp('us', tz='UTC'),
        'end': pa.timestamp('us', tz='UTC'),
        'duration': pa.float64(),
    }
    return pa.table({name: pa.array([r[name] for r in rows], type=types.get(name, pa.string())) for name in ROW_FIELDS})


def timeline_pandas(timeline: NodeTimeline) -> Any:
    """The steps as a pandas `DataFrame` (through `timeline_arrow`)."""
    optional_module('pandas', 'NodeTimeline')
    return timeline_arrow(timeline).to_pandas()
