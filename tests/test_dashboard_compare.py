"""Comparing two runs by the paths they took: steps aligned by node, not by number, so the same nodes line up
again after a detour one run took."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
from serve_helpers import emit_run, exporting_provider, running_server

from tracegraph import BaseNode, End, Graph, GraphRunContext, InstrumentationSettings
from tracegraph.dashboard.store.runoutline import LightSpan
from tracegraph.dashboard.web.compare import align, diverges_at


def _steps(*nodes: str) -> list[LightSpan]:
    return [
        LightSpan(
            f'{i:016x}', None, f'run node {n}', i, i + 1, 'OK', 'r', n, i + 1, 'completed', None, False, 'g', None
        )
        for i, n in enumerate(nodes)
    ]


def _nodes(pairs: list[tuple[LightSpan | None, LightSpan | None]]) -> list[tuple[str | None, str | None]]:
    return [(x.node_id if x else None, y.node_id if y else None) for x, y in pairs]


def test_align_pairs_the_same_nodes_after_a_detour() -> None:
    pairs = align(_steps('Fetch', 'Think', 'Answer'), _steps('Fetch', 'Think', 'Search', 'Think', 'Answer'))
    assert _nodes(pairs) == [
        ('Fetch', 'Fetch'),
        ('Think', 'Think'),
        (None, 'Search'),
        (None, 'Think'),
        ('Answer', 'Answer'),
    ]
    assert diverges_at(pairs) == 2
    # A node run many times is not junk to the matcher: a long loop still lines up.
    loop = align(_steps(*['Work'] * 300, 'Check'), _steps(*['Work'] * 299, 'Check'))
    assert _nodes(loop)[-1] == ('Check', 'Check') and sum(y is None for _, y in _nodes(loop)) == 1
    assert _nodes(align(_steps('A', 'B'), _steps('A', 'C'))) == [('A', 'A'), ('B', 'C')]


def test_the_compare_page_shows_where_paths_part_and_meet_again() -> None:
    with running_server() as server:
        with exporting_provider(server.url) as (provider, _):
            a = emit_run(provider, graph='agent', steps=('Fetch', 'Think', 'Answer'), nested_calls=False)
            b = emit_run(provider, graph='agent', steps=('Fetch', 'Think', 'Search', 'Think2', 'Answer'))
        html = httpx.get(f'{server.url}/compare', params={'a': a.trace_id, 'b': b.trace_id}, timeout=10).text
        itself = httpx.get(f'{server.url}/compare', params={'a': a.trace_id, 'b': a.trace_id}, timeout=10).text
    assert re.search(r'B took [0-9.]+ms longer\.</p>', html)
    assert (
        'The two runs took the same path. The outputs are the same. Both took as long, to the microsecond.</p>'
        in itself
    )  # not "0µs longer"
    assert 'The paths diverge at step 3: 3 steps on both paths, 0 only in A, 2 only in B.' in html
    rows = re.findall(r'<tr class="step-pair( diverged)?">(.*?)</tr>', html)
    assert [bool(d) for d, _ in rows] == [False, False, True, True, False]
    assert 'paths diverge here' in rows[2][1] and 'only in B' in rows[2][1] and 'only in B' in rows[3][1]
    assert 'paths meet again' in rows[4][1]
    assert re.search(r'<td class="num">3</td><td>Answer .*?<td class="num">5</td><td>Answer ', rows[4][1])
    assert html.count('class="bar node side-a"') == 3 and html.count('class="bar node side-b"') == 5
    assert 'The outputs differ.' in html and 'output <code>3</code>' in html and 'output <code>5</code>' in html


@dataclass
class Total:
    n: int = 0


@dataclass
class Add(BaseNode[Total, None, int]):
    k: int = 1

    async def run(self, ctx: GraphRunContext[Total, None]) -> Add | End[int]:
        ctx.state.n += self.k
        return Add(self.k) if ctx.state.n < 2 else End(ctx.state.n)


def test_shared_steps_say_whether_their_input_and_state_change_differ() -> None:
    with running_server() as server:
        with exporting_provider(server.url) as (provider, _):
            settings = InstrumentationSettings(tracer_provider=provider, state='diff', metrics=False)
            graph = Graph(nodes=[Add], name='adder', instrumentation=settings)
            a = graph.run_sync(Add(1), state=Total())  # 0 -> 1 -> 2: two steps
            b = graph.run_sync(Add(2), state=Total())  # 0 -> 2: one step
        html = httpx.get(f'{server.url}/compare', params={'a': a.trace_id, 'b': b.trace_id}, timeout=10).text
    rows = re.findall(r'<tr class="step-pair( diverged)?">(.*?)</tr>', html)
    assert len(rows) == 2
    first = rows[0][1]
    assert 'input differs' in first and 'state change differs' in first and 'returned Add / End' in first
    assert 'state: {&quot;n&quot;:{&quot;old&quot;:0,&quot;new&quot;:1}}' in first
    assert 'only in A' in rows[1][1]
    assert 'The outputs are the same.' in html and html.count('output <code>2</code>') == 2  # both end on 2
