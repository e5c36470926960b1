"""Time-series charts of a graph's (or a node's) runs as server-side SVG, readable without colour.

Runs per bucket are stacked bars whose outcomes differ by pattern as well as colour (failed is hatched,
interrupted dotted) and carry a legend; duration percentiles are lines that differ by dash (p50 solid, p95
dashed, p99 dotted) and are labelled at their end; every bar and point has a title with its figures.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from html import escape

from ...presentation.html import OUTCOME_COLOURS
from ...presentation.text import format_duration
from ..store.models import TimeBucket
from .markup import time_text

__all__ = ('duration_chart', 'error_rate_chart', 'runs_chart')

_W, _H = 900, 180
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 56, 12, 34
_PATTERNS = (
    '<defs>'
    '<pattern id="hatch-failed" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
    f'<rect width="6" height="6" fill="{OUTCOME_COLOURS["failed"]}"/><line x1="0" y1="0" x2="0" y2="6" '
    'stroke="#fff" stroke-width="2"/></pattern>'
    '<pattern id="dots-interrupted" width="6" height="6" patternUnits="userSpaceOnUse">'
    f'<rect width="6" height="6" fill="{OUTCOME_COLOURS["interrupted"]}"/><circle cx="3" cy="3" r="1.3" fill="#fff"/>'
    '</pattern></defs>'
)
_FILLS = {
    'completed': OUTCOME_COLOURS['completed'],
    'failed': 'url(#hatch-failed)',
    'interrupted': 'url(#dots-interrupted)',
}
_DASHES = {'p50': '', 'p95': '7 4', 'p99': '2 3'}


def _frame(label: str, body: str, y_max_text: str, buckets: Sequence[TimeBucket], legend: str) -> str:
    axis = (
        f'<line class="axis" x1="{_LEFT}" y1="{_H - _BOTTOM}" x2="{_W - _RIGHT}" y2="{_H - _BOTTOM}"/>'
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_H - _BOTTOM}"/>'
        f'<text class="axis-label" x="{_LEFT - 6}" y="{_TOP + 10}" text-anchor="end">{escape(y_max_text)}</text>'
        f'<text class="axis-label" x="{_LEFT - 6}" y="{_H - _BOTTOM}" text-anchor="end">0</text>'
        f'{_time_axis(buckets)}'
    )
    return (
        f'<figure class="chart"><svg viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(label)}">'
        f'{_PATTERNS}{axis}{body}</svg><figcaption>{legend}</figcaption></figure>'
    )


_TIME_TICKS = 5
"""Labels along a chart's time axis: its first and last bucket's full time, and evenly spaced ones between."""


def _time_axis(buckets: Sequence[TimeBucket]) -> str:
    """The time axis' labels: the ends in full (UTC), the ticks between them as short as the range allows."""
    first, last = buckets[0].start, buckets[-1].start
    span = (last - first).total_seconds()
    short = '%m-%d %H:%M' if span >= 2 * 86400 else '%H:%M' if span >= 600 else '%H:%M:%S'
    x = _x(buckets)
    left, right = x(0), x(len(buckets) - 1)
    labels = [
        f'<text class="axis-label" x="{_LEFT}" y="{_H - 12}" text-anchor="start">{time_text(first)}</text>',
        f'<text class="axis-label" x="{_W - _RIGHT}" y="{_H - 12}" text-anchor="end">{time_text(last)}</text>',
    ]
    if span > 0:
        for i in range(1, _TIME_TICKS - 1):
            at = first + (last - first) * (i / (_TIME_TICKS - 1))
            tx = left + (right - left) * i / (_TIME_TICKS - 1)
            labels.append(
                f'<line class="axis" x1="{tx:.1f}" y1="{_H - _BOTTOM}" x2="{tx:.1f}" y2="{_H - _BOTTOM + 4}"/>'
                f'<text class="axis-label" x="{tx:.1f}" y="{_H - 12}" text-anchor="middle">'
                f'{at.strftime(short)}</text>'
            )
    return ''.join(labels)


_LABEL_GAP = 14.0
"""Least vertical distance between two line labels at a chart's end, so p95 and p99 never overlap."""


def _spread(ys: list[float]) -> list[float]:
    """`ys` moved apart (in their order top to bottom) until each is `_LABEL_GAP` from the next, kept in the chart."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    placed = list(ys)
    for before, after in itertools.pairwise(order):
        placed[after] = max(placed[after], placed[before] + _LABEL_GAP)
    overflow = max(0.0, max(placed) - (_H - _BOTTOM))
    return [y - overflow for y in placed]


def _x(buckets: Sequence[TimeBucket]) -> Callable[[int], float]:
    """The x of bucket `i`: buckets sit at their time, so a gap without runs stays a gap."""
    first = buckets[0].start.timestamp()
    width = buckets[0].width
    slots = max(1.0, (buckets[-1].start.timestamp() - first) / width + 1)
    step = (_W - _LEFT - _RIGHT) / slots
    return lambda i: _LEFT + (buckets[i].start.timestamp() - first) / width * step


def _slot(buckets: Sequence[TimeBucket]) -> float:
    first, last = buckets[0].start.timestamp(), buckets[-1].start.timestamp()
    return (_W - _LEFT - _RIGHT) / max(1.0, (last - first) / buckets[0].width + 1)


def runs_chart(buckets: Sequence[TimeBucket], what: str = 'runs') -> str:
    """Stacked bars of `what` per bucket by outcome (completed, failed, interrupted, other)."""
    if not buckets:
        return '<p class="empty">No runs in this time range.</p>'
    x, slot = _x(buckets), _slot(buckets)
    top = max(b.count for b in buckets)
    scale = (_H - _TOP - _BOTTOM) / top
    bars: list[str] = []
    for i, b in enumerate(buckets):
        y = _H - _BOTTOM
        other = b.count - b.completed - b.failed - b.interrupted
        parts = (('completed', b.completed), ('failed', b.failed), ('interrupted', b.interrupted), ('other', other))
        title = f'{time_text(b.start)}: {b.count} {what}, ' + ', '.join(f'{n} {o}' for o, n in parts if n)
        for outcome, n in parts:
            if not n:
                continue
            h = n * scale
            y -= h
            fill = _FILLS.get(outcome, '#6b6b6b')
            bars.append(
                f'<rect class="bar {outcome}" x="{x(i) + 1:.1f}" y="{y:.1f}" width="{max(1.0, slot - 2):.1f}" '
                f'height="{h:.1f}" fill="{fill}"><title>{escape(title)}</title></rect>'
            )
    legend = ''.join(
        f'<span><svg width="14" height="14" aria-hidden="true">{_PATTERNS}<rect width="14" height="14" '
        f'fill="{_FILLS[o]}"/></svg>{o}</span>'
        for o in ('completed', 'failed', 'interrupted')
    )
    per = format_duration(buckets[0].width).replace('.000', '')
    return _frame(f'{what.capitalize()} per {per} by outcome', ''.join(bars), str(top), buckets, legend)


def duration_chart(buckets: Sequence[TimeBucket], what: str = 'run') -> str:
    """Lines of the p50, p95 and p99 duration per bucket."""
    if not buckets:
        return ''
    x, slot = _x(buckets), _slot(buckets)
    top = max(b.p99 for b in buckets) or 1e-9
    scale = (_H - _TOP - _BOTTOM) / top
    lines: list[str] = []
    names = ('p50', 'p95', 'p99')
    series = {
        n: [(x(i) + slot / 2, _H - _BOTTOM - getattr(b, n) * scale) for i, b in enumerate(buckets)] for n in names
    }
    label_ys = dict(zip(names, _spread([series[n][-1][1] + 4 for n in names])))
    for name in names:
        points = series[name]
        dash = f' stroke-dasharray="{_DASHES[name]}"' if _DASHES[name] else ''
        path = ' '.join(f'{px:.1f},{py:.1f}' for px, py in points)
        dots = ''.join(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5"><title>{escape(time_text(b.start))}: {name} '
            f'{format_duration(getattr(b, name))}</title></circle>'
            for (px, py), b in zip(points, buckets)
        )
        lines.append(
            f'<g class="line {name}"><polyline points="{path}" fill="none"{dash}/>{dots}'
            f'<text class="line-label" x="{points[-1][0] + 6:.1f}" y="{label_ys[name]:.1f}">{name}</text></g>'
        )
    legend = ''.join(
        f'<span><svg width="28" height="10" aria-hidden="true"><line x1="0" y1="5" x2="28" y2="5" '
        f'class="legend-line"{f" stroke-dasharray={chr(34)}{d}{chr(34)}" if d else ""}/></svg>{n}</span>'
        for n, d in _DASHES.items()
    )
    return _frame(f'{what.capitalize()} duration percentiles', ''.join(lines), format_duration(top), buckets, legend)


def error_rate_chart(buckets: Sequence[TimeBucket]) -> str:
    """A line of the share of failed runs per bucket, in percent."""
    if not buckets:
        return ''
    x, slot = _x(buckets), _slot(buckets)
    top = max(0.01, max(b.error_rate for b in buckets))
    scale = (_H - _TOP - _BOTTOM) / top
    points = [(x(i) + slot / 2, _H - _BOTTOM - b.error_rate * scale) for i, b in enumerate(buckets)]
    dots = ''.join(
        f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5"><title>{escape(time_text(b.start))}: '
        f'{b.error_rate * 100:.1f}% failed ({b.failed} of {b.count})</title></circle>'
        for (px, py), b in zip(points, buckets)
    )
    path = ' '.join(f'{px:.1f},{py:.1f}' for px, py in points)
    body = f'<g class="line errors"><polyline points="{path}" fill="none"/>{dots}</g>'
    return _frame('Error rate', body, f'{top * 100:.1f}%', buckets, '<span>share of runs that failed</span>')
