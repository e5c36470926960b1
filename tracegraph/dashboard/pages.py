"""Server-rendered HTML pages: the runs list, a run's Gantt timeline and a graph's diagram and node table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ..tracing.timeline import format_duration, run_duration_text
from .api import Readers, path_text, path_trace_id, query_limit, query_text, query_time, stored_run
from .models import RunDetail
from .store import Store
from .svg import OUTCOME_COLOURS, diagram_svg, gantt_svg

__all__ = ('Pages', 'layout')

_OUTCOMES = ('completed', 'failed', 'interrupted')


def layout(title: str, body: str, *, status: int = 200, sign_out: bool = False) -> HTMLResponse:
    """A full page around `body`; `sign_out` adds the sign-out link (when the server has a token)."""
    nav = '<a href="/">Runs</a>' + ('<a href="/logout">Sign out</a>' if sign_out else '')
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)} · tracegraph</title><link rel="icon" href="/favicon.ico" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/dashboard.css">'
        f'</head><body><header><a class="brand" href="/">tracegraph</a><nav>{nav}</nav></header>'
        f'<main>{body}</main><div id="tip" hidden></div><script src="/static/dashboard.js"></script></body></html>'
    )
    return HTMLResponse(html, status_code=status)


def _badge(outcome: str) -> str:
    colour = OUTCOME_COLOURS.get(outcome, '#888')
    return f'<span class="badge" style="background:{colour}">{escape(outcome)}</span>'


def _time(value: object) -> str:
    text = str(value)
    return escape(text[:23].replace('T', ' '))


def _run_href(trace_id: str, run_id: str) -> str:
    return f'/runs/{quote(trace_id)}?run_id={quote(run_id)}'


def _graph_href(graph: str) -> str:
    return f'/graphs/{quote(graph, safe="")}'


@dataclass(kw_only=True)
class Pages:
    """Handlers of the HTML pages, reading `store`."""

    store: Store
    readers: Readers
    sign_out: bool = False
    """Show the sign-out link (the server has a token)."""

    async def runs(self, request: Request) -> Response:
        """`GET /`: the runs list, filtered by graph and outcome, newest first, paged with `before`."""
        limit = query_limit(request)
        before = query_time(request, 'before')
        graph = query_text(request, 'graph')
        outcome = query_text(request, 'outcome')
        since = query_time(request, 'since', relative=True)
        return await self.readers.run(
            lambda: self._runs_page(graph=graph, outcome=outcome, limit=limit, before=before, since=since)
        )

    def _runs_page(
        self, *, graph: str | None, outcome: str | None, limit: int, before: datetime | None, since: datetime | None
    ) -> Response:
        graphs = self.store.graphs()
        runs = self.store.runs(graph=graph, outcome=outcome, limit=limit, before=before, since=since)
        graph_opts = ''.join(
            f'<option value="{escape(g.name)}"{" selected" if g.name == graph else ""}>{escape(g.name)}</option>'
            for g in graphs
        )
        outcome_opts = ''.join(f'<option{" selected" if o == outcome else ""}>{o}</option>' for o in _OUTCOMES)
        form = (
            '<form class="filters" method="get" action="/">'
            f'<label>Graph <select name="graph"><option value="">all</option>{graph_opts}</select></label>'
            f'<label>Outcome <select name="outcome"><option value="">any</option>{outcome_opts}</select></label>'
            f'<label>Show <input name="limit" type="number" min="1" max="1000" value="{limit}"></label>'
            '<button type="submit">Filter</button></form>'
        )
        cards = ''.join(
            f'<a class="card" href="{_graph_href(g.name)}"><b>{escape(g.name)}</b>'
            f'<span>{g.runs} runs · last {_time(g.last_seen)}</span></a>'
            for g in graphs
        )
        rows = ''.join(
            f'<tr class="run" data-trace="{r.trace_id}"><td>{_time(r.start)}</td>'
            f'<td><a href="{_graph_href(r.graph)}">{escape(r.graph)}</a></td>'
            f'<td><a class="runlink" href="{_run_href(r.trace_id, r.run_id)}">'
            f'<code>{escape(r.run_id[:12])}</code></a></td>'
            f'<td class="num">{r.steps if r.steps is not None else "–"}</td>'
            f'<td class="num">{format_duration(r.duration)}</td><td>{_badge(r.outcome)}</td></tr>'
            for r in runs
        )
        table = (
            '<table class="runs"><thead><tr><th>Start (UTC)</th><th>Graph</th><th>Run</th><th class="num">Steps</th>'
            f'<th class="num">Duration</th><th>Outcome</th></tr></thead><tbody>{rows}</tbody></table>'
            if runs
            else '<p class="empty">No runs yet. Point an OpenTelemetry exporter at this server '
            '(<code>OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318</code>) and run a graph.</p>'
        )
        more = ''
        if len(runs) == limit:
            params = {k: v for k, v in (('graph', graph), ('outcome', outcome)) if v}
            params |= {'limit': str(limit), 'before': runs[-1].start.isoformat()}
            more = f'<p><a class="more" href="/?{urlencode(params)}">Older runs →</a></p>'
        graphs_html = f'<section class="cards">{cards}</section>' if graphs else ''
        return layout('Runs', f'<h1>Runs</h1>{graphs_html}{form}{table}{more}', sign_out=self.sign_out)

    async def run(self, request: Request) -> Response:
        """`GET /runs/{trace_id}`: the run's Gantt chart, its steps and any exception with its traceback."""
        trace_id, run_id = path_trace_id(request), query_text(request, 'run_id')

        def render() -> Response:
            detail = stored_run(self.store, trace_id, run_id)
            return layout(f'{detail.timeline.graph} run', _run_body(detail), sign_out=self.sign_out)

        return await self.readers.run(render)

    async def graph(self, request: Request) -> Response:
        """`GET /graphs/{graph}`: the diagram of the transitions seen and the per-node table."""
        graph = path_text(request, 'graph')
        since = query_time(request, 'since', relative=True)
        since_text = request.query_params.get('since', '')
        return await self.readers.run(lambda: self._graph_page(graph, since, since_text))

    def _graph_page(self, graph: str, since: datetime | None, since_text: str) -> Response:
        stats = self.store.node_stats(graph, since=since)
        edges = self.store.edges(graph, since=since)
        total = sum(s.total for s in stats) or 1.0
        rows = ''.join(
            f'<tr class="node-row" data-node="{escape(s.node_id)}"><td>{escape(s.node_id)}</td>'
            f'<td class="num">{s.count}</td><td class="num">{s.error_rate * 100:.1f}%</td>'
            f'<td class="num">{format_duration(s.p50)}</td><td class="num">{format_duration(s.p95)}</td>'
            f'<td class="num">{format_duration(s.p99)}</td><td class="num">{s.total / total * 100:.1f}%</td></tr>'
            for s in stats
        )
        table = (
            '<table class="nodes"><thead><tr><th>Node</th><th class="num">Steps</th><th class="num">Error rate</th>'
            '<th class="num">p50</th><th class="num">p95</th>'
            f'<th class="num">p99</th><th class="num">Share of time</th></tr></thead><tbody>{rows}</tbody></table>'
        )
        form = (
            f'<form class="filters" method="get"><label>Since <input name="since" value="{escape(since_text)}" '
            'placeholder="e.g. 6h, 7d or 2026-01-01"></label><button type="submit">Apply</button>'
            f'<a href="/?graph={quote(graph)}">Runs of this graph →</a></form>'
        )
        body = (
            f'<h1>Graph <code>{escape(graph)}</code></h1>{form}<section class="panel"><h2>Diagram</h2>'
            '<p class="hint">Transitions seen in stored runs; node colour by p95 (green fast → red slow), '
            f'edge width by count.</p><div class="scroll">{diagram_svg(stats, edges)}</div></section>'
            f'<section class="panel"><h2>Nodes</h2>{table if stats else "<p class=empty>No node steps.</p>"}</section>'
        )
        return layout(f'Graph {graph}', body, sign_out=self.sign_out)


def _resumed_panel(detail: RunDetail) -> str:
    """Links to the other parts of a run that was interrupted and resumed, earlier and later."""
    items = [
        f'<li>{label} <a href="{_run_href(ref.trace_id, ref.run_id)}">run <code>{escape(ref.run_id)}</code></a> '
        f'{_badge(ref.outcome or "running")} started {_time(ref.start)} UTC</li>'
        for label, refs in (('resumed from', detail.resumed_from), ('resumed by', detail.resumed_by))
        for ref in refs
    ]
    return f'<section class="panel resumed"><h2>Resumed run</h2><ul>{"".join(items)}</ul></section>'


def _run_body(detail: RunDetail) -> str:
    tl = detail.timeline
    duration = run_duration_text(tl)
    head = (
        f'<h1><a href="{_graph_href(tl.graph)}">{escape(tl.graph)}</a> run <code>{escape(tl.run_id)}</code></h1>'
        f'<p class="meta">{_badge(tl.outcome)} {len(tl.nodes)} steps · {duration} · started {_time(tl.start)} UTC · '
        f'trace <code>{escape(tl.trace_id or "")}</code></p>'
    )
    errors: list[str] = []
    for rec, spans in zip(tl.nodes, detail.nodes):
        if rec.error is not None:
            errors.append(
                f'<div class="exception"><h3>Step {rec.step} <code>{escape(rec.node_id)}</code> raised '
                f'<code>{escape(rec.error.type)}</code>: {escape(rec.error.message)}</h3>'
                f'<pre class="traceback">{escape(rec.error.traceback or "(no traceback recorded)")}</pre></div>'
            )
        for child in spans.children:
            for ev in child.events:
                if ev.name == 'exception':
                    errors.append(
                        f'<div class="exception"><h3>Span <code>{escape(child.name)}</code> in step {rec.step} '
                        f'recorded <code>{escape(str(ev.attributes.get("exception.type", "")))}</code>: '
                        f'{escape(str(ev.attributes.get("exception.message", "")))}</h3>'
                        f'<pre class="traceback">{escape(str(ev.attributes.get("exception.stacktrace", "")))}</pre>'
                        '</div>'
                    )
    steps = ''.join(
        f'<tr><td class="num">{r.step}</td><td>{escape(r.node_id)}</td>'
        f'<td class="num">+{format_duration((r.start - tl.start).total_seconds())}</td>'
        f'<td class="num">{format_duration(r.duration)}</td><td>{_badge(r.outcome)}</td>'
        f'<td>{escape(r.next_node or "–")}</td></tr>'
        for r in tl.nodes
    )
    legend = ''.join(
        f'<span><i style="background:{c}"></i>{o}</span>' for o, c in OUTCOME_COLOURS.items() if o != 'running'
    )
    legend += '<span><i style="background:#8aa2c8"></i>nested span</span>'
    body = (
        f'{head}<section class="panel"><h2>Timeline</h2><div class="legend">{legend}</div>'
        f'<div class="scroll">{gantt_svg(detail)}</div><p class="hint">Hover a bar for its attributes.</p></section>'
    )
    if detail.resumed_from or detail.resumed_by:
        body += _resumed_panel(detail)
    if errors:
        body += f'<section class="panel"><h2>Exceptions</h2>{"".join(errors)}</section>'
    body += (
        '<section class="panel"><h2>Steps</h2><table class="steps"><thead><tr><th class="num">Step</th><th>Node</th>'
        '<th class="num">Start</th><th class="num">Duration</th><th>Outcome</th><th>Next</th></tr></thead>'
        f'<tbody>{steps}</tbody></table>'
        '</section>'
    )
    return body
