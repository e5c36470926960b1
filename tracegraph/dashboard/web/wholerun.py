"""A run interrupted and resumed, drawn as one story: its parts listed in order, and all their steps on one chart.

The chart has a lane per node and one time axis through every part, the parts side by side in start order. A wait
between parts (minutes or days while the run sat in its persistence) is drawn as a fixed-width break with its
length written on it, so the parts' own time keeps the width; each part's width is its share of the parts' summed
time (at least `_MIN_PART_W`). A bar is one node's steps within a few pixels of one part (`runparts.part_bars`),
so a part of 10,000 steps costs no more to draw than its nodes times its bins; each bar links to its longest step,
numbered through the whole run, with the step's detail open. On a phone the page's script draws the chart to the
screen's width (timeline.js), from the `data-x0`/`data-w` the chart carries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from ...presentation.html import OUTCOME_COLOURS
from ...presentation.text import format_duration
from ...tracing.clock import datetime_to_ns, ns_to_datetime
from ..store.models import RunRef
from ..store.runoutline import RunOutline
from ..store.runparts import PartBar
from .markup import badge, run_href, step_href, time_text

__all__ = ('PartSlot', 'part_slots', 'resumed_panel', 'this_part', 'whole_run_svg')

_LABEL_W = 150
_CHART_W = 840
_LANE_H = 20
_HEAD_H = 34
_GAP_W = 56.0
_MIN_PART_W = 24.0
_BIN_PX = 4
"""Pixels of a part's width one bin of its steps covers: steps closer than this merge into one bar."""
_MAX_LANES = 40
"""Nodes drawn as lanes, the busiest first; a node beyond them is in the parts' own pages."""


@dataclass(kw_only=True)
class PartSlot:
    """Where one part of the run is drawn, and the steps of the whole run before it."""

    ref: RunRef
    x: float
    width: float
    start_ns: int
    end_ns: int
    offset: int
    """Steps of the parts before this one: its first step is step `offset + 1` of the whole run."""
    current: bool

    @property
    def bins(self) -> int:
        """Time bins of the part's steps: one per `_BIN_PX` pixels."""
        return max(1, int(self.width // _BIN_PX))


def this_part(outline: RunOutline) -> RunRef:
    """The run `outline` draws as a part of its run."""
    return RunRef(
        trace_id=outline.trace_id, run_id=outline.run_id, graph=outline.graph, outcome=outline.outcome,
        start=ns_to_datetime(outline.start_ns), end=ns_to_datetime(outline.end_ns), steps=outline.total_steps,
    )  # fmt: skip


def part_slots(outline: RunOutline, earlier: Sequence[RunRef], later: Sequence[RunRef], now_ns: int) -> list[PartSlot]:
    """Each part's place on the whole run's chart, in start order (`outline`'s run among them); a part that has not
    ended is drawn up to `now_ns`."""
    parts = [*earlier, this_part(outline), *later]
    spans: list[tuple[int, int]] = []
    for ref in parts:
        start = datetime_to_ns(ref.start)
        spans.append((start, max(start, datetime_to_ns(ref.end) if ref.end is not None else now_ns)))
    gaps = len(parts) - 1
    gap = min(_GAP_W, _CHART_W * 0.3 / gaps) if gaps else 0.0
    room = max(0.0, _CHART_W - gap * gaps - _MIN_PART_W * len(parts))
    total = sum(end - start for start, end in spans) or 1
    slots: list[PartSlot] = []
    x, offset = float(_LABEL_W), 0
    for ref, (start, end) in zip(parts, spans):
        width = _MIN_PART_W + room * (end - start) / total
        current = ref.trace_id == outline.trace_id and ref.run_id == outline.run_id
        slots.append(PartSlot(ref=ref, x=x, width=width, start_ns=start, end_ns=end, offset=offset, current=current))
        x += width + gap
        offset += ref.steps or 0
    return slots


def _steps_text(first: int, last: int) -> str:
    return f'step {first}' if first == last else f'steps {first}–{last}'


def whole_run_svg(slots: Sequence[PartSlot], bars: Mapping[int, Sequence[PartBar]], shown: tuple[int, int]) -> str:
    """Every part's steps on one chart: a lane per node, the parts side by side with the waits between them as
    breaks. `bars[i]` are the bars of `slots[i]`; `shown` is the window of the current part's steps on the page
    (first, last index), which its bars link into without a page load."""
    counts: dict[str, int] = {}
    for part_bars in bars.values():
        for bar in part_bars:
            counts[bar.node_id] = counts.get(bar.node_id, 0) + bar.count
    lanes = {node: i for i, node in enumerate(sorted(counts, key=lambda n: -counts[n])[:_MAX_LANES])}
    height = _HEAD_H + _LANE_H * len(lanes) + 8
    out: list[str] = []
    for i, node in enumerate(lanes):
        y = _HEAD_H + i * _LANE_H
        out.append(
            f'<text class="label lane" x="8" y="{y + 14}">{escape(node[:20])}<title>{escape(node)}</title></text>'
        )
    for i, slot in enumerate(slots):
        ref, steps = slot.ref, slot.ref.steps or 0
        head = _steps_text(slot.offset + 1, slot.offset + steps) if steps else 'no steps yet'
        cls = 'part current' if slot.current else 'part'
        out.append(
            f'<g class="{cls}" data-run="{escape(ref.run_id)}"><rect class="part-band" x="{slot.x:.1f}" y="2" '
            f'width="{slot.width:.1f}" height="{height - 4}" rx="4"/>'
            f'<text class="part-head" x="{slot.x + 4:.1f}" y="14">{escape(head)}</text>'
            f'<text class="part-sub" x="{slot.x + 4:.1f}" y="27">{escape(ref.outcome or "running")}'
            f'{" · this part" if slot.current else ""}</text></g>'
        )
        if i + 1 < len(slots):
            after = slots[i + 1]
            gx0, gx1 = slot.x + slot.width, after.x
            mid = (gx0 + gx1) / 2
            waited = format_duration(max(0, after.start_ns - slot.end_ns) / 1e9)
            words = (
                f'<text x="0" y="{height / 2 + 4:.1f}" text-anchor="middle">waited</text>'
                f'<text x="0" y="{height / 2 + 17:.1f}" text-anchor="middle">{escape(waited)}</text>'
                if gx1 - gx0 >= _GAP_W * 0.75
                else ''  # too many parts for words in each gap: the title says it
            )
            out.append(
                f'<g class="wait" data-x="{mid:.1f}" transform="translate({mid:.1f} 0)"><title>waited {escape(waited)}'
                f'</title><path d="M-4 4 l8 6 l-8 6 l8 6"/>{words}</g>'
            )
        scale = slot.width / max(1, slot.end_ns - slot.start_ns)
        for bar in bars.get(i, ()):
            lane = lanes.get(bar.node_id)
            if lane is None:
                continue
            x0 = slot.x + (bar.start_ns - slot.start_ns) * scale
            x1 = slot.x + (bar.end_ns - slot.start_ns) * scale
            first, last = slot.offset + bar.first + 1, slot.offset + bar.last + 1
            what = f'{_steps_text(first, last)}: {bar.node_id}'
            title = f'{what} · {bar.worst}' if bar.count == 1 else f'{what} ({bar.count} steps) · {bar.worst} worst'
            href = step_href(
                ref.trace_id, ref.run_id, steps, bar.first, bar.longest_span, shown=shown if slot.current else None
            )
            y = _HEAD_H + lane * _LANE_H
            # the link's <title> is its name and its tooltip
            out.append(
                f'<a href="{escape(href)}"><title>{escape(title)}</title><rect class="bar" x="{x0:.1f}" y="{y + 3}" '
                f'width="{max(2.0, min(x1, slot.x + slot.width) - x0):.1f}" height="{_LANE_H - 6}" rx="2" '
                f'fill="{OUTCOME_COLOURS.get(bar.worst, "#6b6b6b")}"/></a>'
            )
    width = _LABEL_W + _CHART_W + 10
    return (
        f'<svg class="whole-run" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'data-x0="{_LABEL_W}" data-w="{_CHART_W}" role="group" '
        'aria-label="Every part of the run on one time axis, a lane per node; the waits between parts are breaks">'
        f'{"".join(out)}</svg>'
    )


def resumed_panel(outline: RunOutline, slots: Sequence[PartSlot], bars: Mapping[int, Sequence[PartBar]]) -> str:
    """The parts of an interrupted and resumed run as one story: the whole run's chart (`whole_run_svg`), then
    each part (this one included) with its steps, numbered on through the whole run, its outcome and its time,
    and how long the run waited between parts. Empty for a run that is one part."""
    if len(slots) < 2:
        return ''
    items: list[str] = []
    for i, slot in enumerate(slots):
        ref = slot.ref
        if i:
            waited = max(0, slot.start_ns - slots[i - 1].end_ns) / 1e9
            items.append(f'<li class="wait">waited {format_duration(waited)}</li>')
        steps = ref.steps or 0
        span = _steps_text(slot.offset + 1, slot.offset + steps) if steps else 'no steps yet'
        took = format_duration((ref.end - ref.start).total_seconds()) if ref.end is not None else 'running'
        name = 'this part' if slot.current else f'run <code>{escape(ref.run_id[:12])}</code>'
        link = name if slot.current else f'<a href="{run_href(ref.trace_id, ref.run_id)}">{name}</a>'
        marked = ' current" aria-current="page' if slot.current else ''
        items.append(
            f'<li class="part{marked}"><b>{span}</b> {badge(ref.outcome or "running")}<br>{link} · '
            f'started {time_text(ref.start)} UTC · {took}</li>'
        )
    chart = whole_run_svg(slots, bars, (outline.first, outline.last))
    return (
        '<section class="panel resumed"><h2>Resumed run</h2><p class="hint">The parts of this run, one after another, '
        'with the steps of the whole run each holds: every step of every part on one time axis (click a bar for its '
        f'step), the waits between parts drawn as breaks.</p><div class="scroll">{chart}</div>'
        f'<ol class="parts">{"".join(items)}</ol></section>'
    )
