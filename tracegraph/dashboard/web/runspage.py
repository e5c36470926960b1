"""The runs list page: filters, quick time ranges, the table of runs and traces, and the newer/older links.

The table sits in `#live-runs`, which the page's script refreshes in place every few seconds while the first page
is shown (`data-live`), so runs appear, and running ones turn completed or failed, without a reload.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from urllib.parse import urlencode

from ...presentation.text import count_text, format_duration
from ..store.models import GraphSummary, RunPage, RunSummary
from ..store.runquery import RUN_OUTCOMES, RunQuery
from .markup import badge, graph_href, live_control, run_href, time_text, trace_href

__all__ = ('runs_body',)

QUICK_RANGES = ('15m', '1h', '6h', '24h', '7d')
"""The time ranges offered as one-click `since` values."""


def _select(name: str, label: str, options: Sequence[tuple[str, str]], chosen: str | None) -> str:
    items = ''.join(
        f'<option value="{escape(value)}"{" selected" if value == (chosen or "") else ""}>{escape(text)}</option>'
        for value, text in options
    )
    return f'<label>{label} <select name="{name}">{items}</select></label>'


def _text(name: str, label: str, value: str, placeholder: str, *, size: int = 10) -> str:
    return (
        f'<label>{label} <input name="{name}" value="{escape(value)}" placeholder="{escape(placeholder)}" '
        f'size="{size}"></label>'
    )


def _picker(name: str) -> str:
    # fills the text field next to it (which also takes durations like 6h), in UTC like every time on the page
    return (
        f'<label>{name.capitalize()} picked (UTC) <input type="datetime-local" class="pick" data-for="{name}" '
        'step="1"></label>'
    )


def _form(params: dict[str, list[str]], graphs: Sequence[GraphSummary]) -> str:
    def one(name: str) -> str:
        return (params.get(name) or [''])[0]

    names = [g.name for g in graphs]
    if one('graph') and one('graph') not in names:  # the filter in force is shown, even for a graph not stored
        names.append(one('graph'))
    graph_opts = [('', 'all'), *((name, name) for name in names)]
    attrs = [*params.get('attr', []), '']
    # the fields past graph and outcome stay folded (a phone shows the runs first) unless one of them is in use
    folded = ('kind', 'service', 'since', 'until', 'min_duration', 'max_duration', 'node', 'attr', 'sort', 'limit')
    folded_in_use = any(v for name in folded for v in params.get(name, []))
    attr_inputs = ''.join(_text('attr', 'Attribute', a, 'key=value', size=14) for a in attrs)
    return (
        '<form class="filters" method="get" action="/" role="search">'
        '<label class="search">Find <input type="search" name="q" '
        f'value="{escape(one("q"))}" placeholder="id, graph, span name, error or attribute" size="34"></label>'
        + _select('graph', 'Graph', graph_opts, one('graph'))
        + _select('outcome', 'Outcome', [('', 'any'), *((o, o) for o in RUN_OUTCOMES)], one('outcome'))
        + f'<details class="more"{" open" if folded_in_use else ""}><summary>More filters</summary>'
        + '<div class="filters">'
        + _select(
            'kind', 'Kind', [('', 'runs and traces'), ('run', 'graph runs'), ('trace', 'other traces')], one('kind')
        )
        + _text('service', 'Service', one('service'), 'service.name')
        + _text('since', 'Since', one('since'), '6h or 2026-01-02')
        + _picker('since')
        + _text('until', 'Until', one('until'), '1h or 2026-01-02')
        + _picker('until')
        + _text('min_duration', 'Min duration', one('min_duration'), '250ms', size=6)
        + _text('max_duration', 'Max duration', one('max_duration'), '2s', size=6)
        + _text('node', 'Node', one('node'), 'node id')
        + attr_inputs
        + _select('sort', 'Sort', [('start', 'newest first'), ('duration', 'longest first')], one('sort'))
        + '<label>Show <input name="limit" type="number" min="1" max="1000" '
        + f'value="{escape(one("limit") or "50")}"></label>'
        + '</div></details>'
        '<button type="submit">Filter</button> <a href="/">Clear</a></form>'
    )


def _quick_ranges(params: dict[str, list[str]]) -> str:
    kept = [(k, v) for k, vs in params.items() if k not in ('since', 'older', 'newer') for v in vs]
    links = ''.join(
        f'<a href="/?{escape(urlencode([*kept, ("since", r)]))}"'
        f'{" aria-current=true" if params.get("since") == [r] else ""}>last {r}</a>'
        for r in QUICK_RANGES
    )
    return f'<nav class="ranges" aria-label="Time range">{links}</nav>'


def _row(r: RunSummary) -> str:
    if r.kind == 'trace':
        what = f'<td><span class="kind">trace</span> {escape(r.service or "")}</td>'
        link = f'<a class="runlink" href="{trace_href(r.trace_id)}">{escape(r.name or r.trace_id[:12])}</a>'
    else:
        what = f'<td><a href="{graph_href(r.graph)}">{escape(r.graph)}</a></td>'
        link = f'<a class="runlink" href="{run_href(r.trace_id, r.run_id)}"><code>{escape(r.run_id[:12])}</code></a>'
    return (
        f'<tr class="run" data-trace="{r.trace_id}" data-run="{escape(r.run_id)}" data-outcome="{escape(r.outcome)}">'
        f'<td>{time_text(r.start)}</td>{what}<td>{link}</td>'
        f'<td class="num">{r.steps if r.steps is not None else "–"}</td>'
        f'<td class="num">{format_duration(r.duration)}</td><td>{badge(r.outcome)}</td></tr>'
    )


def runs_body(
    page: RunPage,
    query: RunQuery,
    params: dict[str, list[str]],
    graphs: Sequence[GraphSummary],
    links: dict[str, str],
    endpoint: str,
) -> str:
    """The runs page's body for `page` of `query`; `links` holds the `newer` / `older` page URLs, `endpoint` the
    OTLP/HTTP base URL this server receives on (the one the browser reached it by)."""
    cards = ''.join(
        f'<a class="card" href="{graph_href(g.name)}"><b>{escape(g.name)}</b>'
        f'<span>{count_text(g.runs, "run")} · last {time_text(g.last_seen)}</span></a>'
        for g in graphs
    )
    rows = ''.join(_row(r) for r in page.runs)
    filtered = any(v for k, v in params.items() if k not in ('limit', 'sort'))
    found = ''
    if filtered and page.runs:
        noun = 'run' if all(r.kind == 'run' for r in page.runs) else 'result'
        verb = 'matches' if len(page.runs) == 1 else 'match'
        more = ' on this page (more on older pages)' if 'older' in links else ''
        found = f'<p class="found" role="status">{count_text(len(page.runs), noun)} {verb}{more}</p>'
    if page.runs:
        table = found + (
            '<div class="scroll"><table class="runs"><thead><tr><th>Start (UTC)</th><th>Graph</th><th>Run</th>'
            '<th class="num">Steps</th><th class="num">Duration</th><th>Outcome</th></tr></thead>'
            f'<tbody>{rows}</tbody></table></div>'
        )
    elif filtered:
        table = '<p class="empty">No run matches these filters. <a href="/">Clear the filters</a>.</p>'
    else:
        table = (
            '<p class="empty">No runs yet. Point an OpenTelemetry exporter at this server '
            f'(<code>OTEL_EXPORTER_OTLP_ENDPOINT={escape(endpoint)}</code>) and run a graph.</p>'
        )
    pager = ''.join(
        f'<a class="{name}" rel="{rel}" href="{escape(links[name])}">{text}</a>'
        for name, rel, text in (('newer', 'prev', '← Newer runs'), ('older', 'next', 'Older runs →'))
        if name in links
    )
    first_page = query.older is None and query.newer is None
    live = live_control() if first_page else ''
    graphs_html = f'<section class="cards">{cards}</section>' if graphs else ''
    return (
        f'<h1>Runs</h1>{graphs_html}{_form(params, graphs)}{_quick_ranges(params)}{live}'
        f'<div id="live-runs"{" data-live" if first_page else ""}>{table}<p class="pager">{pager}</p></div>'
    )
