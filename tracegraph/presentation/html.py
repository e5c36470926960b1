"""Runs as HTML: the outcome colours of the dashboard and notebooks, and the SVG Gantt chart Jupyter shows.

Every name shown is escaped. Imports nothing of tracegraph at run time, so every layer may use it.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from .text import chart_seconds, count_text, format_duration, run_duration_text

if TYPE_CHECKING:
    from ..tracing.timeline import NodeTimeline

__all__ = ('OUTCOME_COLOURS', 'timeline_html')

OUTCOME_COLOURS = {
    'completed': '#1f7a4d',
    'failed': '#c0342b',
    'interrupted': '#9a5b00',
    'running': '#3d5fc4',
    'stale': '#5f6670',
}
"""Bar colour per outcome, in the dashboard and in notebooks; an unknown outcome is grey. Each is dark enough for
white text on it to meet WCAG AA contrast (4.5:1) on the outcome badges."""

_LABEL_W, _CHART_W, _ROW_H = 180, 520, 20


def timeline_html(timeline: NodeTimeline) -> str:
    """An SVG Gantt chart of the run's steps on one time axis, with a one-line header (for Jupyter)."""
    total = chart_seconds(timeline)
    duration = run_duration_text(timeline)
    header = (
        f'<div><b>{escape(timeline.graph)}</b> run <code>{escape(timeline.run_id)}</code> '
        f'<span style="color:{OUTCOME_COLOURS.get(timeline.outcome, "#888")}">{escape(timeline.outcome)}</span> '
        f'{count_text(len(timeline.nodes), "step")} · {duration}</div>'
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
