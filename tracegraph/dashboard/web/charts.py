"""Time-series charts of a graph's (or a node's) runs as server-side SVG, readable without colour.

Runs per bucket are stacked bars whose outcomes differ by pattern as well as colour (failed is hatched,
interrupted dotted) and carry a legend; duration percentiles are lines that differ by dash (p50 solid, p95
dashed, p99 dotted) and are labelled at their end; every bar and point has a title with its figures.
"""

from __future__ import annotations

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
        f'<text class="axis-label" x="{_LEFT}" y="{_H - 12}" text-anchor="start">{time_text(buckets[0].start)}</text>'
        f'<text class="axis-label" x="{_W - _RIGHT}" y="{_H - 12}" text-anchor="end">'
        f'{time_text(buckets[-1].start)}</text>'
    )
    return (
        f'<figure class="chart"><svg viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(label)}">'
        f'{_PATTERNS}{axis}{body}</svg><figcaption>{legend}</figcaption></figure>'
    )


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
    for name in ('p50', 'p95', 'p99'):
        points = [(x(i) + slot / 2, _H - _BOTTOM - getattr(b, name) * scale) for i, b in enumerate(buckets)]
        dash = f' stroke-dasharray="{_DASHES[name]}"' if _DASHES[name] else ''
        path = ' '.join(f'{px:.1f},{py:.1f}' for px, py in points)
        dots = ''.join(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5"><title>{escape(time_text(b.start))}: {name} '
            f'{format_duration(getattr(b, name))}</title></circle>'
            for (px, py), b in zip(points, buckets)
        )
        end_x, end_y = points[-1]
        lines.append(
            f'<g class="line {name}"><polyline points="{path}" fill="none"{dash}/>{dots}'
            f'<text class="line-label" x="{end_x + 6:.1f}" y="{end_y + 4:.1f}">{name}</text></g>'
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
