"""Two runs side by side: their steps aligned by step number, where their paths diverge, and how each step's
duration and node input differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from itertools import zip_longest

from ...presentation.text import count_text, format_duration
from ..store.runoutline import LightSpan, RunOutline
from .markup import badge, graph_href, run_href

__all__ = ('compare_body', 'diverges_at')


def diverges_at(a: RunOutline, b: RunOutline) -> int | None:
    """The index of the first step whose node differs between `a` and `b` (or that only one has); None if none."""
    for i, (x, y) in enumerate(zip_longest(a.steps, b.steps)):
        if x is None or y is None or x.node_id != y.node_id:
            return i
    return None


def _cell(step: LightSpan | None, inputs: Mapping[str, str | None]) -> str:
    if step is None:
        return '<td>–</td><td class="num">–</td><td></td>'
    return (
        f'<td>{escape(step.node_id or "")} {badge(step.outcome or "completed")}</td>'
        f'<td class="num">{format_duration(step.duration)}</td>'
        f'<td><code>{escape((inputs.get(step.span_id) or "")[:120])}</code></td>'
    )


def compare_body(
    a: RunOutline, b: RunOutline, inputs_a: Mapping[str, str | None], inputs_b: Mapping[str, str | None]
) -> str:
    """The compare page of runs `a` and `b`, given the node input of each drawn step (by span id)."""
    split = diverges_at(a, b)
    heads = ''.join(
        f'<div class="side"><h2>{label}: <a href="{run_href(r.trace_id, r.run_id)}"><code>{escape(r.run_id[:12])}'
        f'</code></a></h2><p class="meta">{badge(r.outcome)} <a href="{graph_href(r.graph)}">{escape(r.graph)}</a> · '
        f'{count_text(r.total_steps, "step")} · {format_duration(r.duration)}</p></div>'
        for label, r in (('A', a), ('B', b))
    )
    rows: list[str] = []
    for i, (x, y) in enumerate(zip_longest(a.steps, b.steps)):
        marks: list[str] = []
        if split is not None and i == split:
            marks.append('<span class="mark diverge">paths diverge here</span>')
        if x is not None and y is not None and x.node_id == y.node_id:
            if (inputs_a.get(x.span_id) or '') != (inputs_b.get(y.span_id) or ''):
                marks.append('<span class="mark">input differs</span>')
            delta = y.duration - x.duration
            sign = '+' if delta >= 0 else '−'
            marks.append(f'<span class="delta">B {sign}{format_duration(abs(delta))}</span>')
        classes = 'step-pair' + (' diverged' if split is not None and i >= split else '')
        rows.append(
            f'<tr class="{classes}"><td class="num">{i + 1}</td>{_cell(x, inputs_a)}{_cell(y, inputs_b)}'
            f'<td>{" ".join(marks)}</td></tr>'
        )
    summary = 'The two runs took the same path.' if split is None else f'The paths diverge at step {split + 1}.'
    delta = b.duration - a.duration
    return (
        f'<h1>Compare runs</h1><section class="compare-heads">{heads}</section>'
        f'<p class="meta">{summary} B took {format_duration(abs(delta))} {"longer" if delta >= 0 else "less"}.</p>'
        '<section class="panel"><h2>Steps</h2><div class="scroll"><table class="compare"><thead><tr>'
        '<th class="num">Step</th><th>A node</th><th class="num">A duration</th><th>A input</th>'
        '<th>B node</th><th class="num">B duration</th><th>B input</th><th>Difference</th></tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></div></section>'
    )
