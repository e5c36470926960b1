"""A run's page and a plain trace's page, drawn from outlines so a run of 10,000 steps loads quickly.

A run page shows one window of steps at a time (`?steps=201-400`; `WINDOW` steps by default) on a Gantt chart
zoomed to that window, under an overview strip of the whole run whose bars link to their windows, a table of the
run's steps per node, every exception once, and the window's steps. Each bar and row opens the detail panel,
which loads that span's attributes and events on demand (`/api/traces/{trace}/spans/{span}`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from html import escape
from urllib.parse import quote, urlencode

from ...presentation.text import count_text, format_duration
from ...tracing.attributes import GRAPH_NAME, NODE_ID, RUN_ID
from ...tracing.clock import ns_to_datetime
from ..store.models import NodeStats, RunRef, SpanInfo
from ..store.runoutline import SLOWEST, LightSpan, RunOutline
from .markup import badge, graph_href, live_control, run_href, step_href, time_text
from .svg import OUTCOME_COLOURS, PendingStep, gantt_svg, overview_svg

__all__ = ('TRACE_WINDOW', 'detail_panel', 'run_body', 'trace_body')


def _window_href(outline: RunOutline, first: int, last: int) -> str:
    params = {'run_id': outline.run_id, 'steps': f'{first + 1}-{last + 1}'}
    return f'/runs/{quote(outline.trace_id)}?{urlencode(params)}'


def _step_href(outline: RunOutline, index: int, span_id: str) -> str:
    """A link to step `index` (0-based) with its detail open, in the window shown when it holds the step."""
    return step_href(
        outline.trace_id, outline.run_id, outline.total_steps, index, span_id, shown=(outline.first, outline.last)
    )


def _sort_head(label: str, *, num: bool = False) -> str:
    """A header cell whose button sorts its table by the column (timeline.js)."""
    cls = ' class="num"' if num else ''
    return f'<th{cls} aria-sort="none"><button type="button" class="sort">{label}</button></th>'


def _num(seconds: float, text: str) -> str:
    return f'<td class="num" data-value="{seconds:.9g}">{text}</td>'


def _node_summary(outline: RunOutline) -> str:
    total = sum(n.total for n in outline.by_node) or 1.0
    rows = ''.join(
        f'<tr><td>{escape(n.node_id)}</td><td class="num">{n.count}</td><td class="num">{n.failed}</td>'
        f'{_num(n.median, format_duration(n.median))}'
        + _num(
            n.longest,
            f'<a href="{escape(_step_href(outline, n.longest_index, n.longest_span))}" '
            f'title="Open the longest {escape(n.node_id)} step">{format_duration(n.longest)}</a>',
        )
        + f'{_num(n.total, format_duration(n.total))}{_num(n.total / total, f"{n.total / total * 100:.1f}%")}</tr>'
        for n in outline.by_node
    )
    heads = ''.join(
        _sort_head(label, num=i > 0)
        for i, label in enumerate(('Node', 'Steps', 'Failed', 'Median', 'Longest', 'Total', 'Share'))
    )
    return (
        f'<div class="scroll"><table class="by-node sortable"><thead><tr>{heads}</tr></thead>'
        f'<tbody>{rows}</tbody></table></div>'
    )


def _summary_line(outline: RunOutline) -> str:
    """The run in one sentence: which node ran most, and the longest step, each a link."""
    if not outline.by_node or not outline.slowest:
        return ''
    most = max(outline.by_node, key=lambda n: (n.count, n.total))
    index, longest = outline.slowest[0]
    share = most.count / max(1, outline.total_steps) * 100
    ran = f'<b>{escape(most.node_id)}</b> ran {most.count:,}× ({share:.0f}% of the steps) · ' if most.count > 1 else ''
    return (
        f'<p class="summary">{ran}longest step: <a href="{escape(_step_href(outline, index, longest.span_id))}">'
        f'step {longest.step} <b>{escape(longest.node_id or "")}</b>, {format_duration(longest.duration)}</a></p>'
    )


def _slowest(outline: RunOutline) -> str:
    """The run's longest steps, when there are more steps than that list holds (else the steps table says it)."""
    if outline.total_steps <= SLOWEST:  # the list would hold every step (or, for one step, none)
        return ''
    items = ''.join(
        f'<li><a href="{escape(_step_href(outline, i, s.span_id))}">step {s.step} <b>{escape(s.node_id or "")}</b></a> '
        f'{format_duration(s.duration)} {badge(s.outcome or "completed")}</li>'
        for i, s in outline.slowest
    )
    return (
        f'<section class="panel"><h2>Slowest steps</h2><p class="hint">The {len(outline.slowest)} longest of the '
        f"run's {count_text(outline.total_steps, 'step')}, longest first.</p>"
        f'<ol class="slowest">{items}</ol></section>'
    )


def _errors(outline: RunOutline) -> str:
    items: list[str] = []
    for e in outline.errors:
        where = f'Step {e.step} <code>{escape(e.node_id or "")}</code>' if e.step is not None else 'The run'
        verb = f'span <code>{escape(e.span_name)}</code> in it recorded' if e.nested else 'raised'
        items.append(
            f'<div class="exception" data-span="{e.span_id}"><h3>{where} {verb} <code>{escape(e.type)}</code>: '
            f'{escape(e.message)}</h3>'
            f'<pre class="traceback">{escape(e.traceback or "(no traceback recorded)")}</pre></div>'
        )
    return f'<section class="panel"><h2>Exceptions</h2>{"".join(items)}</section>' if items else ''


def _legend() -> str:
    items = ''.join(f'<span><i style="background:{c}"></i>{o}</span>' for o, c in OUTCOME_COLOURS.items())
    return (
        f'<div class="legend">{items}<span><i style="background:#8aa2c8"></i>nested span</span>'
        '<span><i class="critical"></i>on the critical path (what its step waited for)</span></div>'
    )


SLOW_MARK_MIN_STEPS = 20
"""Steps of a node the graph must have stored before one is marked slower than the node's p95: from fewer, a p95
is the slowest few steps themselves."""


def _step_row(outline: RunOutline, s: LightSpan, node: NodeStats | None) -> str:
    slow = node is not None and node.count >= SLOW_MARK_MIN_STEPS and s.duration > node.p95
    usual = f'{format_duration(node.p50)} / {format_duration(node.p95)}' if node is not None else '–'
    mark = ' <span class="mark slow">slower than its p95</span>' if slow else ''
    offset = (s.start_ns - outline.start_ns) / 1e9
    return (
        f'<tr class="step-row{" slow" if slow else ""}" tabindex="0" data-span="{s.span_id}">'
        f'<td class="num">{s.step}</td><td>{escape(s.node_id or "")}</td>'
        f'{_num(offset, "+" + format_duration(offset))}{_num(s.duration, format_duration(s.duration) + mark)}'
        f'<td class="num">{usual}</td><td>{badge(s.outcome or "completed")}</td>'
        f'<td>{escape(s.next_node or "–")}</td></tr>'
    )


def _compare_form(outline: RunOutline, previous: RunRef | None) -> str:
    prev = ''
    if previous is not None:
        pair = {'a': previous.trace_id, 'a_run': previous.run_id, 'b': outline.trace_id, 'b_run': outline.run_id}
        prev = (
            f'<a class="compare-previous" href="/compare?{escape(urlencode(pair))}">Compare with the previous run</a> '
        )
    return (
        f'<form class="compare-form" method="get" action="/compare">{prev}'
        f'<input type="hidden" name="a" value="{outline.trace_id}">'
        f'<input type="hidden" name="a_run" value="{escape(outline.run_id)}">'
        '<label>or with trace <input name="b" placeholder="trace id" size="34" required></label>'
        '<button type="submit">Compare</button></form>'
    )


def detail_panel(trace_id: str) -> str:
    """The (empty) panel the page's script fills with a span's detail."""
    return (
        f'<aside id="detail" class="panel detail" data-trace="{trace_id}" hidden aria-live="polite" tabindex="-1">'
        '</aside>'
    )


def run_body(
    outline: RunOutline,
    earlier: Sequence[RunRef],
    later: Sequence[RunRef],
    *,
    typical: Mapping[str, NodeStats] | None = None,
    previous: RunRef | None = None,
    now_ns: int | None = None,
    diagram: str = '',
    parts: str = '',
) -> str:
    """The page of `outline`'s run, drawing the window of steps it holds.

    Args:
        outline: the run.
        earlier: the parts of the run it resumed; `later`: those that resume it.
        typical: each node's figures over the graph's stored runs: a step slower than its node's p95 is marked.
        previous: the graph's run before this one, offered for comparison.
        now_ns: the server's clock, where a running run's current step is drawn up to (default: now).
        diagram: the graph's diagram with the run's path, drawn after the timeline.
        parts: the panel of a resumed run's parts (`wholerun.resumed_panel`), drawn after the diagram.
    """
    typical = typical or {}
    first, last, shown = outline.first, outline.last, outline.steps
    since_start = time_text(ns_to_datetime(outline.start_ns))
    head = (
        f'<h1><a href="{graph_href(outline.graph)}">{escape(outline.graph)}</a> run '
        f'<code>{escape(outline.run_id)}</code></h1>'
        f'<p class="meta">{badge(outline.outcome)} {count_text(outline.total_steps, "step")} · '
        f'{format_duration(outline.duration)}'
        f'{" so far" if outline.outcome in ("running", "stale") else ""} · started {since_start} UTC · '
        f'trace <a href="/traces/{outline.trace_id}"><code>{escape(outline.trace_id)}</code></a>'
        + (f' · service {escape(outline.service)}' if outline.service else '')
        + '</p>'
    )
    pager = ''
    if outline.total_steps > len(shown):
        size = last - first + 1
        links: list[str] = []
        if first > 0:
            links.append(
                f'<a rel="prev" href="{escape(_window_href(outline, max(0, first - size), first - 1))}">'
                '← earlier steps</a>'
            )
        part = "this part's " if outline.step_offset else ''
        links.append(f'<span>{part}steps {first + 1}–{last + 1} of {outline.total_steps}</span>')
        if last + 1 < outline.total_steps:
            end = min(outline.total_steps - 1, last + size)
            links.append(f'<a rel="next" href="{escape(_window_href(outline, last + 1, end))}">later steps →</a>')
        strip = overview_svg(outline, lambda a, b: _window_href(outline, a, b))
        pager = f'<div class="window">{strip}<p class="pager">{" ".join(links)}</p></div>'
    live = outline.outcome == 'running'
    pending = _pending(outline, now_ns) if outline.outcome in ('running', 'interrupted') else None
    waiting = _waiting(outline, pending, resumed=bool(later))
    if pending is not None and (not live or outline.last + 1 != outline.total_steps):
        pending = None  # drawn on the chart only while it runs, in the window that ends with the last step
    timeline = (
        f'<section class="panel"><h2>Timeline</h2>{_summary_line(outline)}{_legend()}{waiting}{pager}{_ZOOM}'
        f'<div class="scroll">{gantt_svg(outline, shown, pending)}</div>'
        '<p class="hint">Click a bar or a step (or focus it and press Enter) for its attributes and events. Drag '
        'across the chart to zoom into a time range; with a bar focused, + and − zoom, [ and ] pan, 0 resets, and '
        "f folds or unfolds its step's nested spans (or click the step's name).</p>"
        '</section>'
    )
    steps = ''.join(_step_row(outline, s, typical.get(s.node_id or '')) for s in shown)
    run_span = (
        f'<p><button type="button" class="open-span" data-span="{outline.run_span.span_id}">'
        'Run span attributes</button></p>'
        if outline.run_span
        else ''
    )
    if outline.step_offset:
        o = outline.step_offset
        holds = (
            f'its step is step {o + 1}'
            if outline.total_steps == 1
            else f'its steps are steps {o + 1}–{o + outline.total_steps}'
        )
        head += (
            f'<p class="meta part">A resumed part of its run: {holds} of the whole run, after the '
            f'{count_text(o, "step")} of the earlier parts linked below.</p>'
        )
    body = (
        f'{live_control() if live else ""}<div id="live-run"{" data-live" if live else ""}>'
        f'{head}{run_span}{_compare_form(outline, previous)}{timeline}{diagram}'
        f'{parts}{_errors(outline)}{_slowest(outline)}'
        f'<section class="panel"><h2>Steps by node</h2>{_node_summary(outline)}</section>'
        f'<section class="panel deferred"><h2>Steps</h2>{_export(outline)}'
        '<div class="scroll"><table class="steps sortable">'
        f'<thead><tr>{_sort_head("Step", num=True)}{_sort_head("Node")}{_sort_head("Start", num=True)}'
        f'{_sort_head("Duration", num=True)}<th class="num">Node p50 / p95</th>{_sort_head("Outcome")}'
        f'{_sort_head("Next")}</tr></thead><tbody>{steps}</tbody></table></div></section></div>'
    )
    return body + detail_panel(outline.trace_id)


_ZOOM = (
    '<div class="zoom" role="toolbar" aria-label="Zoom the timeline">'
    '<button type="button" data-zoom="in">Zoom in</button><button type="button" data-zoom="out">Zoom out</button>'
    '<button type="button" data-zoom="earlier">← Earlier</button>'
    '<button type="button" data-zoom="later">Later →</button>'
    '<button type="button" data-zoom="reset">Whole window</button>'
    '<button type="button" data-fold="all" aria-pressed="false">Fold nested spans</button>'
    '<span id="zoom-range" role="status">showing the whole window</span></div>'
)


def _export(outline: RunOutline) -> str:
    q = urlencode({'run_id': outline.run_id})
    where = quote(outline.trace_id)
    return (
        f'<p class="export">Every step of the run as <a href="/api/runs/{where}/steps.csv?{q}" download>CSV</a> or '
        f'<a href="/api/runs/{where}?{q}">JSON</a> (with the spans under each step).</p>'
    )


def _pending(outline: RunOutline, now_ns: int | None) -> PendingStep | None:
    """The step a running or interrupted run is in: the node its last step named next, since that step ended."""
    last = outline.final
    if last is None or last.next_node is None or last.next_node == 'End':
        return None
    now = time.time_ns() if now_ns is None else now_ns
    step = outline.step_offset + outline.total_steps + 1
    return PendingStep(step=step, node_id=last.next_node, since_ns=last.end_ns, now_ns=now)


def _waiting(outline: RunOutline, pending: PendingStep | None, *, resumed: bool) -> str:
    """What the run is doing now: running a step, or (interrupted, and not resumed yet) waiting to run one."""
    if pending is None or (outline.outcome == 'interrupted' and resumed):
        return ''
    since = f'{time_text(ns_to_datetime(pending.since_ns))} UTC'
    if outline.outcome == 'running':
        return f'<p class="pending">Running step {pending.step}: <b>{escape(pending.node_id)}</b> since {since}</p>'
    waited = format_duration(max(0, pending.now_ns - pending.since_ns) / 1e9)
    return (
        f'<p class="pending waiting">Waiting in <b>{escape(pending.node_id)}</b> (step {pending.step}) since {since}, '
        f'for {waited}: the run was interrupted there and has not been resumed.</p>'
    )


def _runs_in(trace_id: str, spans: Sequence[SpanInfo]) -> str:
    """Links to the graph runs whose run spans are in the trace, or says there are none."""
    runs = {
        str(s.attributes[RUN_ID]): str(s.attributes.get(GRAPH_NAME, ''))
        for s in spans
        if RUN_ID in s.attributes and NODE_ID not in s.attributes  # a run span: node spans carry their node id
    }
    if not runs:
        return 'no graph run in this trace'
    links = ', '.join(
        f'<a href="{run_href(trace_id, run_id)}">{escape(graph)} run <code>{escape(run_id[:12])}</code></a>'
        for run_id, graph in runs.items()
    )
    return f'{count_text(len(runs), "graph run")}: {links}'


TRACE_WINDOW = 1000
"""Spans of a trace drawn at once on its page (its runs' pages draw their steps in windows of their own)."""


def trace_body(trace_id: str, spans: Sequence[SpanInfo], *, first: int = 0) -> str:
    """The page of a trace: its spans as an indented tree with their durations, `TRACE_WINDOW` of them from
    index `first` (0-based, depth-first order), and links to its graph runs."""
    start = min(s.start for s in spans)
    first = max(0, min(first, len(spans) - 1))
    shown = spans[first : first + TRACE_WINDOW]
    rows = ''.join(
        f'<tr class="span-row" tabindex="0" data-span="{s.span_id}">'
        f'<td style="padding-left:{0.5 + 1.2 * min(s.depth, 20):.1f}em">'
        f'{escape(s.name)}</td><td class="num">+{format_duration((s.start - start).total_seconds())}</td>'
        f'<td class="num">{format_duration(s.duration)}</td><td>{escape(s.status)}</td></tr>'
        for s in shown
    )
    pager = ''
    if len(spans) > TRACE_WINDOW:
        base = f'/traces/{quote(trace_id)}'
        links: list[str] = []
        if first > 0:
            links.append(f'<a rel="prev" href="{base}?from={max(1, first - TRACE_WINDOW + 1)}">← earlier spans</a>')
        links.append(f'<span>spans {first + 1}–{first + len(shown)} of {len(spans):,}</span>')
        if first + len(shown) < len(spans):
            links.append(f'<a rel="next" href="{base}?from={first + len(shown) + 1}">later spans →</a>')
        pager = f'<p class="pager">{" ".join(links)}</p>'
    return (
        f'<h1>Trace <code>{escape(trace_id)}</code></h1>'
        f'<p class="meta">{count_text(len(spans), "span")} · started {time_text(start)} UTC · '
        f'{_runs_in(trace_id, spans)}</p>'
        f'<section class="panel"><h2>Spans</h2>{pager}<div class="scroll"><table class="spans"><thead><tr><th>Span</th>'
        '<th class="num">Start</th><th class="num">Duration</th><th>Status</th></tr></thead>'
        f'<tbody>{rows}</tbody></table></div>{pager}</section>{detail_panel(trace_id)}'
    )
