"""Server-side SVG: a run's Gantt chart and a graph's diagram. Pure functions from models to markup."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from ...presentation.html import OUTCOME_COLOURS
from ...presentation.text import format_duration
from ..store.models import NodeStats, Transition
from ..store.runoutline import LightSpan, RunOutline

__all__ = (
    'DURATION_BANDS',
    'OUTCOME_COLOURS',
    'PendingStep',
    'diagram_svg',
    'duration_band',
    'duration_legend',
    'fit_text',
    'gantt_svg',
    'overview_svg',
    'paired_gantt_svg',
)

_SPAN_COLOUR = '#8aa2c8'
_SPAN_ERROR_COLOUR = '#e58a84'
_LABEL_W = 230
_CHART_W = 760
_ROW_H = 22
_AXIS_H = 24


_MAX_INDENT = 12
"""Nesting levels shown by indentation; deeper spans line up with the last level (the tip gives the depth)."""


def _duration_label(x: float, width: float, y: float, seconds: float) -> str:
    # right of the bar when it fits in the chart, else left of it (never over it)
    if x + width + 60 <= _LABEL_W + _CHART_W + 20:
        return f'<text class="dur" x="{x + width + 4:.1f}" y="{y}">{format_duration(seconds)}</text>'
    return f'<text class="dur" x="{x - 4:.1f}" y="{y}" text-anchor="end">{format_duration(seconds)}</text>'


def _nice_step(total: float) -> float:
    raw = total / 6 if total > 0 else 1.0
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def _axis(total: float, x_of: Callable[[float], float], bottom: float) -> str:
    """Ticks and grid lines of a time axis from 0 to `total` seconds (the page's script redraws them on zoom)."""
    tick = _nice_step(total)
    axis: list[str] = []
    t = 0.0
    while t <= total * 1.0001:
        tx = x_of(t)
        axis.append(
            f'<line class="grid" x1="{tx:.1f}" y1="{_AXIS_H - 4}" x2="{tx:.1f}" y2="{bottom}"/>'
            f'<text class="tick" x="{tx:.1f}" y="{_AXIS_H - 8}">{format_duration(t) if t else "0"}</text>'
        )
        t += tick
    return f'<g class="axis" data-bottom="{bottom}">{"".join(axis)}</g>'


def _times(t0: float, duration: float) -> str:
    return f'data-t0="{t0:.9g}" data-t1="{t0 + duration:.9g}"'


@dataclass(frozen=True, kw_only=True)
class PendingStep:
    """The step a running run is in now: its node (the last step's next) since the last step ended."""

    step: int
    node_id: str
    since_ns: int
    now_ns: int


def gantt_svg(outline: RunOutline, steps: Sequence[LightSpan], pending: PendingStep | None = None) -> str:
    """One row per node step of `steps` (coloured by outcome, its outcome in its title) followed by the spans
    nested under it, on a time axis from the first of `steps` to the last; with `pending`, the step running now as
    a last, growing bar up to a line marking now.

    Every bar is focusable and carries `data-span`: the page opens its detail panel on click or Enter. A nested
    span's row carries its step's span id (`data-under`), so the page can fold a step's nested spans away. Bars, the
    now line and the chart carry their times in seconds from the axis' 0 (`data-t0`, `data-t1`, `data-total`), so
    the page's script zooms and pans the chart without a page load.
    """
    if not steps:
        return ''
    start = min(s.start_ns for s in steps)
    end = max(s.end_ns for s in steps)
    if len(steps) == outline.total_steps:
        start, end = min(start, outline.start_ns), max(end, outline.end_ns)
    if pending is not None:
        end = max(end, pending.now_ns)
    total = max((end - start) / 1e9, 1e-9)
    scale = _CHART_W / total

    def x_of(t: float) -> float:
        return _LABEL_W + max(0.0, min(_CHART_W, t * scale))

    rows: list[str] = []
    y = _AXIS_H
    for step in steps:
        offset = (step.start_ns - start) / 1e9
        x, w = x_of(offset), max(2.0, step.duration * scale)
        outcome = step.outcome or 'completed'
        colour = OUTCOME_COLOURS.get(outcome, '#6b6b6b')
        fold = ' foldable' if outline.children.get(step.span_id) else ''
        title = f'step {step.step}: {step.node_id} · {format_duration(step.duration)} · {outcome}'
        rows.append(
            f'<g class="row" data-row="{step.span_id}"><text class="label{fold}" x="8" y="{y + 15}">'
            f'{escape(f"{step.step}. {step.node_id}")}</text>'
            f'<rect class="bar node" tabindex="0" role="button" data-span="{step.span_id}" data-step="{step.step}" '
            f'data-node="{escape(step.node_id or "")}" data-outcome="{escape(outcome)}" '
            f'{_times(offset, step.duration)} x="{x:.1f}" y="{y + 3}" '
            f'width="{w:.1f}" height="{_ROW_H - 6}" rx="3" fill="{colour}"><title>{escape(title)}</title></rect>'
            f'{_duration_label(x, w, y + 15, step.duration)}</g>'
        )
        y += _ROW_H
        critical = outline.critical_path(step)
        for child, depth in outline.children.get(step.span_id, []):
            cx, cw = x_of((child.start_ns - start) / 1e9), max(1.5, child.duration * scale)
            fill = _SPAN_ERROR_COLOUR if child.status == 'ERROR' else _SPAN_COLOUR
            on_path = child.span_id in critical
            indent = 8 + 14 * min(depth, _MAX_INDENT)
            rows.append(
                f'<g class="row child" data-under="{step.span_id}"><text class="label sub" x="{indent}" y="{y + 14}">'
                f'{escape(child.name[:40])}</text>'
                f'<rect class="bar span{" critical" if on_path else ""}" tabindex="0" role="button" '
                f'data-span="{child.span_id}" {_times((child.start_ns - start) / 1e9, child.duration)} x="{cx:.1f}" '
                f'y="{y + 5}" width="{cw:.1f}" height="{_ROW_H - 10}" rx="2" fill="{fill}">'
                f'<title>{escape(child.name)} · {format_duration(child.duration)} · depth {depth}'
                f'{" · on the critical path" if on_path else ""}</title></rect></g>'
            )
            y += _ROW_H
    if pending is not None:
        x, now_x = x_of((pending.since_ns - start) / 1e9), x_of((pending.now_ns - start) / 1e9)
        running = max(0.0, (pending.now_ns - pending.since_ns) / 1e9)
        title = f'step {pending.step}: {pending.node_id} · running for {format_duration(running)}'
        rows.append(
            f'<g class="row pending"><text class="label" x="8" y="{y + 15}">'
            f'{escape(f"{pending.step}. {pending.node_id}")}</text>'
            f'<rect class="bar running" {_times((pending.since_ns - start) / 1e9, running)} x="{x:.1f}" y="{y + 3}" '
            f'width="{max(2.0, now_x - x):.1f}" '
            f'height="{_ROW_H - 6}" rx="3"><title>{escape(title)}</title></rect>'
            f'<text class="dur" x="{now_x + 4:.1f}" y="{y + 15}">running {format_duration(running)}</text></g>'
            f'<line class="now" data-t0="{(pending.now_ns - start) / 1e9:.9g}" x1="{now_x:.1f}" y1="{_AXIS_H - 4}" '
            f'x2="{now_x:.1f}" y2="{y + _ROW_H}">'
            '<title>now</title></line>'
        )
        y += _ROW_H
    height = y + 6
    width = _LABEL_W + _CHART_W + 20
    return (
        f'<svg class="gantt" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'data-total="{total:.9g}" data-x0="{_LABEL_W}" data-w="{_CHART_W}" data-row-h="{_ROW_H}" '
        f'role="group" aria-label="Gantt chart of the run">{_axis(total, x_of, y)}{"".join(rows)}</svg>'
    )


def overview_svg(outline: RunOutline, href: Callable[[int, int], str]) -> str:
    """The whole run in one strip: a bar per bucket of consecutive steps (`outline.buckets`), each a link to its
    window of steps, spanning their time, coloured by the worst outcome in it and as tall as its longest step (by
    the square root of its share of the run's longest, so a lone outlier stands out and short steps stay visible);
    the window shown is outlined."""
    if not outline.buckets:
        return ''
    total = max(outline.duration, 1e-9)
    width, height = _LABEL_W + _CHART_W + 20, 40
    tallest = max(b.longest for b in outline.buckets) or 1e-9
    inner, least = height - 12, 5.0
    bars: list[str] = []
    for b in outline.buckets:
        x0 = (b.start_ns - outline.start_ns) / 1e9 / total * (width - 20) + 10
        x1 = (b.end_ns - outline.start_ns) / 1e9 / total * (width - 20) + 10
        h = least + (inner - least) * math.sqrt(max(0.0, b.longest) / tallest)
        current = b.first <= outline.last and b.last >= outline.first
        title = f'steps {b.first_step}–{b.last_step} · longest {format_duration(b.longest)} · {b.worst} worst'
        bars.append(
            f'<a href="{escape(href(b.first, b.last))}"><rect class="bucket{" shown" if current else ""}" '
            f'x="{x0:.1f}" y="{6 + inner - h:.1f}" width="{max(1.0, x1 - x0):.1f}" height="{h:.1f}" '
            f'data-longest="{b.longest:.9g}" fill="{OUTCOME_COLOURS.get(b.worst)}"><title>{escape(title)}</title>'
            '</rect></a>'
        )
    return (
        f'<svg class="overview" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="group" '
        'aria-label="The whole run: each bar is as tall as its longest step and links to its steps">'
        f'{"".join(bars)}</svg>'
    )


def paired_gantt_svg(
    pairs: Sequence[tuple[LightSpan | None, LightSpan | None]], a_start_ns: int, b_start_ns: int
) -> str:
    """Two runs' aligned steps on one time axis: a row per pair, run A's step above and run B's below, each placed
    from its own run's start, so where one run lost time shows as a growing shift."""
    ends = [
        (s.end_ns - start) / 1e9 for pair in pairs for s, start in zip(pair, (a_start_ns, b_start_ns)) if s is not None
    ]
    if not ends:
        return ''
    total = max(max(ends), 1e-9)
    scale = _CHART_W / total

    def x_of(t: float) -> float:
        return _LABEL_W + max(0.0, min(_CHART_W, t * scale))

    rows: list[str] = []
    y = _AXIS_H
    for i, pair in enumerate(pairs):
        names = ' / '.join(dict.fromkeys(s.node_id or '' for s in pair if s is not None))
        rows.append(
            f'<text class="label" x="8" y="{y + 17}">{escape(fit_text(f"{i + 1}. {names}", _LABEL_W - 14, 7))}</text>'
        )
        for half, (step, start, side) in enumerate(zip(pair, (a_start_ns, b_start_ns), 'AB')):
            if step is None:
                continue
            offset = (step.start_ns - start) / 1e9
            colour = OUTCOME_COLOURS.get(step.outcome or 'completed', '#6b6b6b')
            title = f'{side}: step {step.step} {step.node_id} · {format_duration(step.duration)}'
            faded = ' fill-opacity="0.6"' if side == 'B' else ''
            rows.append(
                f'<rect class="bar node side-{side.lower()}" role="img" x="{x_of(offset):.1f}" '
                f'y="{y + 2 + half * 11}" width="{max(2.0, step.duration * scale):.1f}" height="9" rx="2" '
                f'fill="{colour}"{faded}><title>{escape(title)} at +{format_duration(offset)}</title></rect>'
            )
        y += _ROW_H + 4
    width = _LABEL_W + _CHART_W + 20
    return (
        f'<svg class="gantt paired" viewBox="0 0 {width} {y + 6}" width="{width}" height="{y + 6}" role="group" '
        f'aria-label="Both runs on one time axis">{_axis(total, x_of, y)}{"".join(rows)}</svg>'
    )


DURATION_BANDS = (
    (1e-3, '#dbe7f6', '#1f2733'),
    (1e-2, '#b3cde9', '#1f2733'),
    (1e-1, '#7fa8d6', '#1f2733'),
    (1.0, '#3f6fae', '#ffffff'),
    (10.0, '#2e5b9a', '#ffffff'),
    (float('inf'), '#1b3a6b', '#ffffff'),
)
"""p95 bands of the diagram's node colours (upper bound in seconds, fill, text): an absolute scale with a legend,
in blues, so a uniform graph is one colour and red keeps meaning failure."""


def duration_band(p95: float) -> tuple[str, str]:
    """The (fill, text colour) of a node whose p95 is `p95` seconds."""
    return next((fill, text) for bound, fill, text in DURATION_BANDS if p95 < bound)


def duration_legend() -> str:
    """The legend of `DURATION_BANDS`."""
    labels = ['< 1ms', '< 10ms', '< 100ms', '< 1s', '< 10s', '≥ 10s']
    items = ''.join(
        f'<span><i style="background:{fill}"></i>{label}</span>' for (_, fill, _), label in zip(DURATION_BANDS, labels)
    )
    return f'<div class="legend">p95: {items}<span><i class="failing"></i>has failed steps</span></div>'


def fit_text(text: str, width: float, char_width: float) -> str:
    """`text` cut to about `width` pixels at `char_width` per character, with an ellipsis when cut."""
    room = max(1, int(width / char_width))
    return text if len(text) <= room else text[: room - 1] + '…'


def _left_to_right(by_step: list[str], edges: Sequence[Transition]) -> list[str]:
    """The nodes (but `End`) left to right: by how many edges from the graph's entry they are (the node no other
    node leads to, when there is one), then in `by_step`'s order (by average step); nodes only edges name last.

    The steps' numbers alone are not enough: each resumed part of a run numbers its steps from 1 again.
    """
    nodes = list(by_step)
    for e in edges:
        for n in (e.source, e.target):
            if n not in nodes and n != 'End':
                nodes.append(n)
    led_to = {e.target for e in edges if e.source != e.target}
    entries = [n for n in nodes if n not in led_to]
    if len(entries) != 1:
        return nodes
    depth = {entries[0]: 0}
    frontier = [entries[0]]
    while frontier:
        following: list[str] = []
        for e in edges:
            if e.source in frontier and e.target not in depth and e.target != 'End':
                depth[e.target] = depth[e.source] + 1
                following.append(e.target)
        frontier = following
    place = {n: i for i, n in enumerate(nodes)}
    return sorted(nodes, key=lambda n: (depth.get(n, len(nodes)), place[n]))


def diagram_svg(
    stats: list[NodeStats],
    edges: list[Transition],
    edge_href: Callable[[str, str], str],
    *,
    node_href: Callable[[str], str] | None = None,
    taken: set[tuple[str, str]] | None = None,
    current: str | None = None,
) -> str:
    """The graph as seen: nodes left to right from its entry (`_left_to_right`, then `End`), arcs above for forward
    transitions,
    below for backward ones; node colour by p95, edge width by count; edges declared but never taken (count 0)
    dashed, and the nodes only they name drawn too.

    With `node_href`, each node that ran links to its steps. With `taken` (one run's transitions), those edges are
    drawn in the accent colour and the others faded: the run's path; `current` marks the node that run is in now.
    """
    order = _left_to_right([s.node_id for s in stats], edges)
    if any(e.target == 'End' for e in edges):
        order.append('End')
    if not order:
        return '<p class="empty">No node steps recorded yet.</p>'
    by_id = {s.node_id: s for s in stats}
    gap, box_w, box_h = 200, 170, 58
    xs = {n: 40 + i * gap for i, n in enumerate(order)}
    drawn = [e for e in edges if e.source in xs and e.target in xs]

    def lift_of(e: Transition) -> float:
        return 60.0 if e.source == e.target else 30 + abs(xs[e.target] - xs[e.source]) * 0.25

    up = max((lift_of(e) for e in drawn if xs[e.target] >= xs[e.source]), default=0.0)
    down = max((lift_of(e) for e in drawn if xs[e.target] < xs[e.source]), default=0.0)
    top = 20 + up
    height = top + box_h + down + 20
    width = 40 + (len(order) - 1) * gap + box_w + 40
    max_count = max((e.count for e in edges), default=1) or 1
    paths: list[str] = []
    for e in drawn:
        stroke = 1.5 + 6 * math.log1p(e.count) / math.log1p(max_count)
        sx, tx = xs[e.source] + box_w / 2, xs[e.target] + box_w / 2
        label = f'{e.source} → {e.target}: {e.count}'
        if e.source == e.target:
            d = f'M {sx - 20} {top} C {sx - 50} {top - 60}, {sx + 50} {top - 60}, {sx + 20} {top}'
            lx, ly = sx, top - 48
        else:
            forward = tx > sx
            lift = lift_of(e)
            y0 = top if forward else top + box_h
            cy = y0 - lift if forward else y0 + lift
            y1 = y0 - 2 if forward else y0 + 2  # the arrowhead stops short of the box instead of under it
            d = f'M {sx - 8} {y0} C {sx - 8} {cy}, {tx + 8} {cy}, {tx + 8} {y1}'
            lx, ly = (sx + tx) / 2, (y0 - lift * 0.75 - 5) if forward else (y0 + lift * 0.75 + 14)
        if e.count == 0:  # declared by the graph, never taken by a stored step: drawn dashed, nothing to list
            paths.append(
                f'<g class="edge never" data-source="{escape(e.source)}" data-target="{escape(e.target)}" '
                f'data-count="0"><path d="{d}" stroke-width="1.5" marker-end="url(#arrow)"><title>'
                f'{escape(e.source)} → {escape(e.target)}: declared, never taken</title></path></g>'
            )
            continue
        on_path = '' if taken is None else ' taken' if (e.source, e.target) in taken else ' off-path'
        paths.append(
            f'<a href="{escape(edge_href(e.source, e.target))}"><g class="edge{on_path}" '
            f'data-source="{escape(e.source)}" '
            f'data-target="{escape(e.target)}" data-count="{e.count}">'
            f'<path d="{d}" stroke-width="{stroke:.1f}" marker-end="url(#arrow)"><title>{escape(label)} '
            '(click for the runs)</title></path>'
            f'<text class="edge-label" x="{lx:.0f}" y="{ly:.0f}">{e.count}</text></g></a>'
        )
    boxes: list[str] = []
    for n in order:
        s = by_id.get(n)
        if s is not None:
            fill, ink = duration_band(s.p95)
            lines = [f'p95 {format_duration(s.p95)} · {s.count}×']
        else:  # the end, or a node the graph declares that no stored step ran
            fill, ink = ('#55606e', '#ffffff') if n == 'End' else ('#eef1f5', '#1f2733')
            lines = ['end of run' if n == 'End' else 'never ran']
        failing = s is not None and s.error_rate > 0
        if failing and s is not None:
            lines.append(f'{s.error_rate * 100:.0f}% failed')
        outline = f' stroke="{OUTCOME_COLOURS["failed"]}" stroke-width="3"' if failing else ''
        # The text's colour is a class, not a `fill` attribute, which the page's `svg text` rule would override.
        ink_class = 'ink-light' if ink == '#ffffff' else 'ink-dark'
        cx = xs[n] + box_w / 2
        text = f'<text class="gname {ink_class}" x="{cx}" y="{top + 19}">{escape(fit_text(n, box_w - 12, 7.4))}</text>'
        for i, line in enumerate(lines):
            text += (
                f'<text class="gsub {ink_class}" x="{cx}" y="{top + 36 + 14 * i}">'
                f'{escape(fit_text(line, box_w - 12, 6.4))}</text>'
            )
        now = ' current' if n == current else ''
        title = ' · '.join(lines) + (' · the run is here now' if now else '')
        box = (
            f'<g class="gnode{" failing" if failing else ""}{now}" data-node="{escape(n)}"><title>{escape(n)}: '
            f'{escape(title)}</title><rect x="{xs[n]}" y="{top}" width="{box_w}" height="{box_h}" rx="8" '
            f'fill="{fill}"{outline}/>{text}</g>'
        )
        boxes.append(f'<a href="{escape(node_href(n))}">{box}</a>' if node_href is not None and s is not None else box)
    defs = (
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="11" markerHeight="11" '
        'markerUnits="userSpaceOnUse" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#7c8796"/></marker></defs>'
    )
    return (
        f'<svg class="diagram" viewBox="0 0 {width} {height}" style="max-width:{width}px" role="group" '
        f'aria-label="Graph diagram">{defs}{"".join(paths)}{"".join(boxes)}</svg>'
    )
