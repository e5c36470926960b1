"""Runs as text: the one duration format, and the terminal Gantt chart's bar arithmetic and lines.

Presentation of the tracing layer's `NodeTimeline`, for the console exporter, the demo, reports and the dashboard;
it imports nothing of tracegraph at run time, so every layer may use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..tracing.timeline import NodeRecord, NodeTimeline

__all__ = ('bar_cells', 'chart_seconds', 'count_text', 'format_duration', 'run_duration_text', 'timeline_text')


def count_text(count: int, noun: str) -> str:
    """`count` and `noun`, the noun in the plural unless the count is one (`1 run`, `2 runs`, `0 steps`)."""
    return f'{count:,} {noun}' if count == 1 else f'{count:,} {noun}s'


def format_duration(seconds: float) -> str:
    """A duration in the unit that suits it: `850µs`, `12.5ms`, `3.042s`, `3m 05s`, `2h 07m`.

    The one duration format of tracegraph's output: timelines, the console exporter, the report and the dashboard.
    """
    if seconds < 1e-3:
        return f'{seconds * 1e6:.0f}µs'
    if seconds < 1:
        return f'{seconds * 1e3:.1f}ms'
    if seconds < 120:
        return f'{seconds:.3f}s'
    if seconds < 7200:
        return f'{int(seconds // 60)}m {int(seconds % 60):02d}s'
    return f'{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m'


def run_duration_text(timeline: NodeTimeline) -> str:
    """The run's duration as `format_duration` writes it, or `running` while the run has not ended."""
    return 'running' if timeline.duration is None else format_duration(timeline.duration)


def chart_seconds(timeline: NodeTimeline) -> float:
    """The time a chart of the run spans: start to end, or to the last step's end while it runs (never 0)."""
    end = timeline.end or max((n.end for n in timeline.nodes), default=timeline.start)
    return max((end - timeline.start).total_seconds(), 1e-9)


def bar_cells(timeline: NodeTimeline, node: NodeRecord, width: int) -> tuple[int, int]:
    """Where a step's bar goes in a `width`-cell text Gantt chart of its run: (first cell, length), length >= 1.

    The one bar arithmetic of the terminal timelines (`NodeTimeline.render`, the console exporter, the demo).
    """
    total = chart_seconds(timeline)
    first = min(width - 1, max(0, int((node.start - timeline.start).total_seconds() / total * width)))
    return first, min(width - first, max(1, round(node.duration / total * width)))


def timeline_text(timeline: NodeTimeline, *, width: int = 40) -> str:
    """A plain-text Gantt chart: a header line, then one line per node step with a bar scaled to its duration."""
    dur = timeline.duration
    header = f'{timeline.graph}  run {timeline.run_id}  {timeline.outcome}' + (
        f'  {format_duration(dur)}' if dur is not None else ''
    )
    lines = [header]
    id_width = max((len(n.node_id) for n in timeline.nodes), default=0)
    step_width = len(str(len(timeline.nodes)))
    for n in timeline.nodes:
        first, length = bar_cells(timeline, n, width)
        bar = ' ' * first + '█' * length + ' ' * (width - first - length)
        suffix = f'  {n.error.type}: {n.error.message}' if n.error else ''
        label = f'{n.step:>{step_width}} {n.node_id:<{id_width}}'
        lines.append(f'  {label}  |{bar}| {format_duration(n.duration):>8}  {n.outcome}{suffix}')
    return '\n'.join(lines)
