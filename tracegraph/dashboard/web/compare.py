"""Two runs side by side: their steps aligned by the paths they took through the graph, where the paths part
and meet again, how each shared step's duration, node input, state change and next node differ, and both runs on
one time axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from html import escape
from itertools import zip_longest

from ...presentation.text import count_text, format_duration
from ..store.runoutline import LightSpan, RunOutline
from .markup import badge, graph_href, run_href
from .svg import paired_gantt_svg

__all__ = ('Pair', 'StepTexts', 'align', 'compare_body', 'diverges_at')

Pair = tuple[LightSpan | None, LightSpan | None]
"""A step of run A and the step of run B aligned with it; None where one run has no step there."""


@dataclass(frozen=True, kw_only=True)
class StepTexts:
    """What one run recorded, as JSON text: each drawn step's node input and state change (by span id), and the
    run's output."""

    inputs: Mapping[str, str | None] = field(default_factory=dict[str, str | None])
    states: Mapping[str, str | None] = field(default_factory=dict[str, str | None])
    output: str | None = None
    """The run's output (`tracegraph.run.output`), None when it recorded none."""


def align(a: Sequence[LightSpan], b: Sequence[LightSpan]) -> list[Pair]:
    """The steps of two runs aligned by their node paths, not their step numbers: the longest common runs of
    nodes pair up (difflib's matching, with no item treated as junk), so after a detour one run took (a retry,
    an extra tool call) the same nodes line up again; steps only one run took pair with None, and differing
    nodes at the same place in both paths pair with each other."""
    matcher = SequenceMatcher(a=[s.node_id for s in a], b=[s.node_id for s in b], autojunk=False)
    pairs: list[Pair] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == 'equal':
            pairs.extend(zip(a[i1:i2], b[j1:j2]))
        else:
            pairs.extend(zip_longest(a[i1:i2], b[j1:j2]))
    return pairs


def _same(pair: Pair) -> bool:
    x, y = pair
    return x is not None and y is not None and x.node_id == y.node_id


def diverges_at(pairs: Sequence[Pair]) -> int | None:
    """The index of the first aligned pair whose steps differ (a different node, or a step only one run took)."""
    return next((i for i, pair in enumerate(pairs) if not _same(pair)), None)


def _cell(step: LightSpan | None, texts: StepTexts) -> str:
    if step is None:
        return '<td class="num">–</td><td>–</td><td class="num">–</td><td></td>'
    state = texts.states.get(step.span_id)
    changed = f'<br><code class="state">state: {escape(state[:160])}</code>' if state and state != '{}' else ''
    return (
        f'<td class="num">{step.step}</td><td>{escape(step.node_id or "")} {badge(step.outcome or "completed")}</td>'
        f'<td class="num">{format_duration(step.duration)}</td>'
        f'<td><code>{escape((texts.inputs.get(step.span_id) or "")[:120])}</code>{changed}</td>'
    )


def _marks(pair: Pair, previous: Pair | None, a: StepTexts, b: StepTexts) -> list[str]:
    x, y = pair
    marks: list[str] = []
    if not _same(pair) and (previous is None or _same(previous)):
        marks.append('<span class="mark diverge">paths diverge here</span>')
    if _same(pair) and previous is not None and not _same(previous):
        marks.append('<span class="mark rejoin">paths meet again</span>')
    if x is not None and y is not None and _same(pair):
        if (a.inputs.get(x.span_id) or '') != (b.inputs.get(y.span_id) or ''):
            marks.append('<span class="mark">input differs</span>')
        if (a.states.get(x.span_id) or '') != (b.states.get(y.span_id) or ''):
            marks.append('<span class="mark">state change differs</span>')
        if x.next_node != y.next_node:
            marks.append(
                f'<span class="mark">returned {escape(x.next_node or "–")} / {escape(y.next_node or "–")}</span>'
            )
        delta = y.duration - x.duration
        marks.append(f'<span class="delta">B {"+" if delta >= 0 else "−"}{format_duration(abs(delta))}</span>')
    elif x is None:
        marks.append('<span class="mark">only in B</span>')
    elif y is None:
        marks.append('<span class="mark">only in A</span>')
    else:
        marks.append('<span class="mark">different nodes</span>')
    return marks


def compare_body(a: RunOutline, b: RunOutline, texts_a: StepTexts, texts_b: StepTexts) -> str:
    """The compare page of runs `a` and `b`, given what each drawn step recorded (node input, state change)."""
    pairs = align(a.steps, b.steps)
    split = diverges_at(pairs)
    heads = ''.join(
        f'<div class="side"><h2>{label}: <a href="{run_href(r.trace_id, r.run_id)}"><code>{escape(r.run_id[:12])}'
        f'</code></a></h2><p class="meta">{badge(r.outcome)} <a href="{graph_href(r.graph)}">{escape(r.graph)}</a> · '
        f'{count_text(r.total_steps, "step")} · {format_duration(r.duration)}</p>'
        f'<p class="meta">output <code>{escape((t.output or "–")[:200])}</code></p></div>'
        for label, r, t in (('A', a, texts_a), ('B', b, texts_b))
    )
    rows: list[str] = []
    for i, pair in enumerate(pairs):
        marks = _marks(pair, pairs[i - 1] if i else None, texts_a, texts_b)
        classes = 'step-pair' + ('' if _same(pair) else ' diverged')
        rows.append(
            f'<tr class="{classes}"><td class="num">{i + 1}</td>{_cell(pair[0], texts_a)}{_cell(pair[1], texts_b)}'
            f'<td>{" ".join(marks)}</td></tr>'
        )
    common = sum(_same(p) for p in pairs)
    only_a = sum(p[1] is None for p in pairs)
    only_b = sum(p[0] is None for p in pairs)
    if split is None:
        summary = 'The two runs took the same path.'
    else:
        summary = (
            f'The paths diverge at step {split + 1}: {count_text(common, "step")} on both paths, '
            f'{only_a} only in A, {only_b} only in B.'
        )
    if texts_a.output is not None or texts_b.output is not None:
        summary += ' The outputs are the same.' if texts_a.output == texts_b.output else ' The outputs differ.'
    delta = b.duration - a.duration
    gap = format_duration(abs(delta))
    took = (
        'Both took as long, to the microsecond.'
        if gap == '0µs'
        else f'B took {gap} {"longer" if delta > 0 else "less"}.'
    )
    return (
        f'<h1>Compare runs</h1><section class="compare-heads">{heads}</section>'
        f'<p class="meta">{summary} {took}</p>'
        '<section class="panel"><h2>On one time axis</h2><p class="hint">Each row is a place on the two paths: '
        "A above, B below, each from its own run's start.</p>"
        f'<div class="scroll">{paired_gantt_svg(pairs, a.start_ns, b.start_ns)}</div></section>'
        '<section class="panel"><h2>Steps, aligned by path</h2><div class="scroll"><table class="compare"><thead><tr>'
        '<th class="num">Row</th><th class="num">A step</th><th>A node</th><th class="num">A duration</th>'
        '<th>A input</th><th class="num">B step</th><th>B node</th><th class="num">B duration</th><th>B input</th>'
        f'<th>Difference</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div></section>'
    )
