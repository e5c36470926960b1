"""Server-rendered HTML pages: the runs list, a run's page, a trace's span tree, and a graph's page."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from html import escape
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ...presentation.text import format_duration
from ...tracing.attributes import NODE_INPUT, RUN_OUTPUT, STATE_DIFF
from ..store.database import Store
from ..store.graphstats import declared_edges
from ..store.models import NodeStats, Transition
from ..store.runoutline import MAX_WINDOW, RunOutline
from ..store.runparts import PartPath
from .api import (
    ApiError,
    Readers,
    page_links,
    path_text,
    path_trace_id,
    query_text,
    query_time,
    runs_query,
    stored_trace,
)
from .charts import duration_chart, error_rate_chart, runs_chart
from .compare import StepTexts, compare_body
from .markup import graph_href, layout, run_href, trace_href
from .runpage import run_body, trace_body
from .runspage import runs_body
from .svg import diagram_svg, duration_legend
from .wholerun import PartSlot, part_slots, resumed_panel

__all__ = ('Pages',)


def _edge_href(graph: str) -> Callable[[str, str], str]:
    """Where a diagram's edge links: the runs of `graph` that took it."""
    return lambda source, target: f'/?{urlencode({"graph": graph, "edge": f"{source}->{target}"})}'


def _node_href(graph: str) -> Callable[[str], str]:
    """Where a diagram's node links: its steps over time."""
    return lambda node: f'{graph_href(graph)}/nodes/{quote(node, safe="")}'


def _run_diagram(
    outline: RunOutline, stats: list[NodeStats], declared: list[tuple[str, str]], whole: RunPath | None = None
) -> str:
    """The graph's diagram with this run's path: the transitions it took (with how often) over the edges the graph
    declares, and the node it is in now (running or waiting); `whole`: the path of every part of a resumed run."""
    if whole is None:
        final = outline.final
        waiting = outline.outcome in ('running', 'interrupted') and final is not None
        whole = RunPath(transitions=outline.transitions, current=final.next_node if waiting and final else None)
    current = whole.current if whole.current != 'End' else None
    transitions = whole.transitions
    taken = [Transition(source=s, target=t, count=n) for (s, t), n in transitions.items()]
    never = [Transition(source=s, target=t, count=0) for s, t in declared if (s, t) not in transitions]
    drawn = diagram_svg(
        stats, taken + never, _edge_href(outline.graph), node_href=_node_href(outline.graph),
        taken=set(transitions), current=current,
    )  # fmt: skip
    parts = ' (all its parts)' if whole.parts > 1 else ''
    return (
        f'<section class="panel"><h2>Path through the graph</h2><p class="hint">The transitions this run{parts} took, '
        'in blue (edge width and label: how often), over the edges the graph declares (dashed where this run did not '
        'take them)' + (', and the node it is in now dashed' if current else '') + "; node colour is the node's "
        'p95 over all stored runs. A node links to its steps, an edge to the runs that took it.</p>'
        f'<div class="scroll">{drawn}</div></section>'
    )


@dataclass(kw_only=True)
class RunPath:
    """A run's way through its graph: each (node, next node) it took and how often, and the node it is in now
    (running or waiting in it), over all its parts when it was resumed."""

    transitions: dict[tuple[str, str], int]
    current: str | None
    parts: int = 1


def _whole_path(store: Store, outline: RunOutline, slots: list[PartSlot]) -> RunPath:
    """The path of every part of a resumed run: their transitions summed, and the node the last part is in now."""
    transitions: dict[tuple[str, str], int] = {}
    current = None
    for slot in slots:
        ref = slot.ref
        if slot.current:
            path = PartPath(
                transitions=outline.transitions, last_next=outline.final.next_node if outline.final else None
            )
        else:
            path = store.part_path(ref.trace_id, ref.run_id)
        for edge, n in path.transitions.items():
            transitions[edge] = transitions.get(edge, 0) + n
        current = path.last_next if ref.outcome in ('running', 'interrupted') else None
    return RunPath(transitions=transitions, current=current, parts=len(slots))


def _run_output(store: Store, outline: RunOutline) -> str | None:
    """The run's recorded output (its run span's `tracegraph.run.output`), None without one."""
    if outline.run_span is None:
        return None
    return store.span_texts(outline.trace_id, [outline.run_span.span_id], RUN_OUTPUT).get(outline.run_span.span_id)


_TRACE_ID = re.compile(r'[0-9a-f]{32}', re.ASCII)


@dataclass(kw_only=True)
class Pages:
    """Handlers of the HTML pages, reading `store`."""

    store: Store
    readers: Readers
    sign_out: bool = False
    """Show the sign-out link (the server has a token)."""
    stale_after: float = 600.0
    """Seconds after which a run without its run span is shown as stale."""

    async def runs(self, request: Request) -> Response:
        """`GET /`: the runs list with its filters (see `api.runs_query`) and keyset pages.

        `q` holding a stored trace id or run id, or a graph's exact name, goes straight to its page.
        """
        query = runs_query(request, stale_after=self.stale_after)
        params = {k: request.query_params.getlist(k) for k in request.query_params}

        def render() -> Response:
            if query.search is not None:
                target = self._found(query.search.strip())
                if target is not None:
                    return RedirectResponse(target, status_code=303)
            page = self.store.run_page(query)
            # the Host header passed the server's Host check: it is how this browser reaches the receiver
            endpoint = f'{request.url.scheme}://{request.url.netloc}'
            body = runs_body(page, query, params, self.store.graphs(), page_links(request, page), endpoint)
            return layout('Runs', body, sign_out=self.sign_out)

        return await self.readers.run(render)

    def _found(self, text: str) -> str | None:
        """The page `text` names directly: a run by trace id or run id, a trace, or a graph by name."""
        found = self.store.find_run(text)
        if found is not None:
            trace_id, run_id = found
            return trace_href(trace_id) if run_id is None else run_href(trace_id, run_id)
        if any(g.name == text for g in self.store.graphs()):
            return graph_href(text)
        return None

    async def run(self, request: Request) -> Response:
        """`GET /runs/{trace_id}?run_id=&steps=`: one window of the run's steps, its exceptions and its steps.

        A trace that holds spans but no run redirects to its span tree (`/traces/{trace_id}`).
        """
        trace_id, run_id = path_trace_id(request), query_text(request, 'run_id')
        steps = query_text(request, 'steps')

        def render() -> Response:
            try:
                outline = self.store.run_outline(trace_id, run_id=run_id, steps=steps, stale_after=self.stale_after)
            except ValueError as exc:
                raise ApiError(400, f'steps must be a range of step numbers: {exc}') from None
            if outline is None:
                if run_id is None and self.store.find_run(trace_id) is not None:
                    return RedirectResponse(trace_href(trace_id), status_code=303)
                raise ApiError(404, f'No run found in trace {trace_id!r}.')
            earlier, later = self.store.resumed_parts(
                trace_id, outline.run_id, outline.start_ns, graph=outline.graph or None
            )
            outline.continue_numbering(sum(ref.steps or 0 for ref in earlier))
            stats = self.store.node_stats(outline.graph)
            previous = self.store.previous_run(outline.graph, outline.start_ns)
            typical = {s.node_id: s for s in stats}
            run_span = (outline.trace_id, outline.run_span.span_id) if outline.run_span is not None else None
            slots = part_slots(outline, earlier, later, time.time_ns()) if earlier or later else []
            whole = _whole_path(self.store, outline, slots) if slots else None
            declared = declared_edges(self.store.query, outline.graph, run_span=run_span)
            diagram = _run_diagram(outline, stats, declared, whole)
            bars = {
                i: self.store.part_bars(s.ref.trace_id, s.ref.run_id, s.start_ns, s.end_ns, s.bins)
                for i, s in enumerate(slots)
            }
            parts = resumed_panel(outline, slots, bars)
            body = run_body(outline, earlier, later, typical=typical, previous=previous, diagram=diagram, parts=parts)
            return layout(f'{outline.graph} run', body, sign_out=self.sign_out)

        return await self.readers.run(render)

    async def compare(self, request: Request) -> Response:
        """`GET /compare?a=TRACE&a_run=&b=TRACE&b_run=`: two runs side by side, aligned by step."""
        sides = [(_trace_param(request, name), query_text(request, f'{name}_run')) for name in ('a', 'b')]

        def render() -> Response:
            outlines: list[RunOutline] = []
            for trace_id, run_id in sides:
                outline = self.store.run_outline(trace_id, run_id=run_id, steps=f'1-{MAX_WINDOW}')
                if outline is None:
                    raise ApiError(404, f'No run found in trace {trace_id!r}.')
                outlines.append(outline)
            a, b = outlines
            texts = [
                StepTexts(
                    inputs=self.store.span_texts(o.trace_id, [s.span_id for s in o.steps], NODE_INPUT),
                    states=self.store.span_texts(o.trace_id, [s.span_id for s in o.steps], STATE_DIFF),
                    output=_run_output(self.store, o),
                )
                for o in outlines
            ]
            return layout('Compare runs', compare_body(a, b, *texts), sign_out=self.sign_out)

        return await self.readers.run(render)

    async def trace(self, request: Request) -> Response:
        """`GET /traces/{trace_id}?from=N`: the spans of a trace as a tree (any trace, graph run or not), a window of
        them from span N."""
        trace_id = path_trace_id(request)
        first = query_text(request, 'from')
        if first is not None and (not re.fullmatch(r'[0-9]{1,9}', first) or int(first) < 1):
            raise ApiError(400, f'from must be a span number (1 or more, ASCII digits), got {first!r}.')

        def render() -> Response:
            spans = stored_trace(self.store, trace_id)
            body = trace_body(trace_id, spans, first=int(first) - 1 if first else 0)
            return layout(f'Trace {trace_id[:8]}', body, sign_out=self.sign_out)

        return await self.readers.run(render)

    async def graph(self, request: Request) -> Response:
        """`GET /graphs/{graph}?since=&until=`: runs over time, the diagram of the transitions seen, the nodes."""
        graph = path_text(request, 'graph')
        since = query_time(request, 'since', relative=True)
        until = query_time(request, 'until', relative=True)
        texts = (request.query_params.get('since', ''), request.query_params.get('until', ''))
        return await self.readers.run(lambda: self._graph_page(graph, since, until, texts))

    async def node(self, request: Request) -> Response:
        """`GET /graphs/{graph}/nodes/{node}?since=&until=`: one node's steps over time."""
        graph, node = path_text(request, 'graph'), path_text(request, 'node')
        since = query_time(request, 'since', relative=True)
        until = query_time(request, 'until', relative=True)
        texts = (request.query_params.get('since', ''), request.query_params.get('until', ''))

        def render() -> Response:
            buckets = self.store.timeseries(graph, node=node, since=since, until=until)
            if not buckets and not any(s.node_id == node for s in self.store.node_stats(graph)):
                raise ApiError(404, f'No steps of node {node!r} in graph {graph!r}.')
            runs_link = f'/?{urlencode({"graph": graph, "node": node})}'
            body = (
                f'<h1>Node <code>{escape(node)}</code> of <a href="{graph_href(graph)}">{escape(graph)}</a></h1>'
                f'{_range_form(texts, runs_link, "Runs through this node →")}'
                f'<section class="panel"><h2>Steps over time</h2>{runs_chart(buckets, "steps")}'
                f'{duration_chart(buckets, "step")}{error_rate_chart(buckets)}</section>'
            )
            return layout(f'Node {node}', body, sign_out=self.sign_out)

        return await self.readers.run(render)

    def _graph_page(
        self, graph: str, since: datetime | None, until: datetime | None, texts: tuple[str, str]
    ) -> Response:
        known = [g.name for g in self.store.graphs()]
        if graph not in known:
            shown = ', '.join(known[:20]) or 'none yet'
            raise ApiError(404, f'No runs of a graph named {graph!r} are stored. Graphs stored: {shown}.')
        stats = self.store.node_stats(graph, since=since)
        edges = self.store.edges(graph, since=since)
        buckets = self.store.timeseries(graph, since=since, until=until)
        total = sum(s.total for s in stats) or 1.0
        rows = ''.join(
            f'<tr class="node-row" data-node="{escape(s.node_id)}">'
            f'<td><a href="{graph_href(graph)}/nodes/{quote(s.node_id, safe="")}">{escape(s.node_id)}</a></td>'
            f'<td class="num">{s.count}</td><td class="num">{s.error_rate * 100:.1f}%</td>'
            f'<td class="num">{format_duration(s.p50)}</td><td class="num">{format_duration(s.p95)}</td>'
            f'<td class="num">{format_duration(s.p99)}</td><td class="num">{s.total / total * 100:.1f}%</td></tr>'
            for s in stats
        )
        table = (
            '<div class="scroll"><table class="nodes"><thead><tr><th>Node</th><th class="num">Steps</th>'
            '<th class="num">Error rate</th><th class="num">p50</th><th class="num">p95</th>'
            '<th class="num">p99</th><th class="num">Share of time</th></tr></thead>'
            f'<tbody>{rows}</tbody></table></div>'
        )

        body = (
            f'<h1>Graph <code>{escape(graph)}</code></h1>'
            f'{_range_form(texts, f"/?graph={quote(graph)}", "Runs of this graph →")}'
            f'<section class="panel"><h2>Runs over time</h2>{runs_chart(buckets)}{duration_chart(buckets)}'
            f'{error_rate_chart(buckets)}</section>'
            '<section class="panel"><h2>Diagram</h2><p class="hint">The graph as its latest run declared it, with the '
            'transitions seen in stored runs: edge width by count (click an edge for the runs that took it), dashed '
            'where no stored step took it.</p>'
            f'{duration_legend()}<div class="scroll">'
            f'{diagram_svg(stats, edges, _edge_href(graph), node_href=_node_href(graph))}</div></section>'
            f'<section class="panel"><h2>Nodes</h2>{table if stats else "<p class=empty>No node steps.</p>"}</section>'
        )
        return layout(f'Graph {graph}', body, sign_out=self.sign_out)


def _trace_param(request: Request, name: str) -> str:
    text = (query_text(request, name) or '').strip().lower()
    if not _TRACE_ID.fullmatch(text):
        raise ApiError(400, f'{name} must be the 32-hex-digit trace id of a run, got {text[:64]!r}.')
    return text


def _range_form(texts: tuple[str, str], runs_link: str, runs_text: str) -> str:
    since, until = texts
    return (
        f'<form class="filters" method="get"><label>Since <input name="since" value="{escape(since)}" '
        'placeholder="e.g. 6h, 7d or 2026-01-01"></label>'
        f'<label>Until <input name="until" value="{escape(until)}" placeholder="e.g. 1h or 2026-01-02"></label>'
        f'<button type="submit">Apply</button><a href="{escape(runs_link)}">{runs_text}</a></form>'
    )
