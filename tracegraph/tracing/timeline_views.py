"""A `NodeTimeline` for notebooks and DataFrames: an HTML Gantt chart, rows, an Arrow table, a pandas DataFrame.

`NodeTimeline._repr_html_`, `.rows()`, `.to_arrow()` and `.to_pandas()` call these. The chart uses the dashboard's
outcome colours (`OUTCOME_COLOURS`, whose one home this is) and escapes every name it shows.
"""

from __future__ import annotations

import importlib
from html import escape
from typing import TYPE_CHECKING, Any

from .timeline import chart_seconds, format_duration, run_duration_text

if TYPE_CHECKING:
    from .timeline import NodeTimeline

__all__ = (
    'OUTCOME_COLOURS',
    'ROW_FIELDS',
    'optional_module',
    'timeline_arrow',
    'timeline_html',
    'timeline_pandas',
    'timeline_rows',
)

OUTCOME_COLOURS = {
    'completed': '#1f7a4d',
    'failed': '#c0342b',
    'interrupted': '#9a5b00',
    'running': '#3d5fc4',
    'stale': '#5f6670',
}
"""Bar colour per outcome, in the dashboard and in notebooks; an unknown outcome is grey. Each is dark enough for
white text on it to meet WCAG AA contrast (4.5:1) on the outcome badges."""

ROW_FIELDS = (
    'graph', 'run_id', 'trace_id', 'step', 'node_id', 'span_id', 'start', 'end', 'duration', 'outcome',
    'next_node', 'error_type', 'error_message',
)  # fmt: skip
"""The columns of `rows()`, `to_arrow()` and `to_pandas()`: one row per node step."""

_LABEL_W, _CHART_W, _ROW_H = 180, 520, 20


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


def timeline_html(timeline: NodeTimeline) -> str:
    """An SVG Gantt chart of the run's steps on one time axis, with a one-line header (for Jupyter)."""
    total = chart_seconds(timeline)
    duration = run_duration_text(timeline)
    header = (
        f'<div><b>{escape(timeline.graph)}</b> run <code>{escape(timeline.run_id)}</code> '
        f'<span style="color:{OUTCOME_COLOURS.get(timeline.outcome, "#888")}">{escape(timeline.outcome)}</span> '
        f'{len(timeline.nodes)} steps · {duration}</div>'
    )
    bars: list[str] = []
    for i, n in enumerate(timeline.nodes):
        y = i * _ROW_H
        x = _LABEL_W + (n.start - timeline.start).total_seconds() / total * _CHART_W
        width = max(1.5, n.duration / total * _CHART_W)
        tip = f'step {n.step}: {n.node_id} {format_duration(n.duration)} {n.outcome}'
        if n.error:
            tip += f' {n.error.type}: {n.error.message}'
        bars.append(
            f'<text x="4" y="{y + 14}" font-size="12">{n.step} {escape(n.node_id)}</text>'
            f'<rect x="{x:.1f}" y="{y + 3}" width="{width:.1f}" height="{_ROW_H - 6}" rx="2" '
            f'fill="{OUTCOME_COLOURS.get(n.outcome, "#888")}"><title>{escape(tip)}</title></rect>'
            f'<text x="{min(x + width + 4, _LABEL_W + _CHART_W):.1f}" y="{y + 14}" font-size="11" '
            f'fill="#555">{format_duration(n.duration)}</text>'
        )
    height = max(1, len(timeline.nodes)) * _ROW_H
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="tracegraph-timeline" width="{_LABEL_W + _CHART_W + 70}" '
        f'height="{height}" font-family="sans-serif">{"".join(bars)}</svg>'
    )
    return f'<div class="tracegraph">{header}{svg}</div>'
