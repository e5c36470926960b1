"""Runs under a sampler that drops them: nothing costly is built for spans nobody keeps, the metrics stay exact, and
a sampler that keeps node spans of a dropped run still gets the whole node span."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.metrics.export import HistogramDataPoint
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes
from tracing_helpers import Pipeline, make_pipeline, sdk_attributes

from tracegraph import BaseNode, End, Graph, GraphRunContext
from tracegraph.tracing import attributes as attr

pytestmark = pytest.mark.anyio


class Costly:
    """A value tracegraph can serialise only through its `repr`: every serialisation of it is counted."""

    def __init__(self) -> None:
        self.serialised = 0

    def __repr__(self) -> str:
        self.serialised += 1
        return 'Costly()'


class CountedError(ValueError):
    """An exception that counts how often its message is formatted (as recording it on a span does)."""

    formatted = 0

    def __str__(self) -> str:
        CountedError.formatted += 1
        return 'the basket tore'


@dataclass
class Basket:
    items: list[int] = field(default_factory=list[int])
    tag: Costly = field(default_factory=Costly)


@dataclass
class Add(BaseNode[Basket, None, Costly]):
    item: int
    tag: Costly

    async def run(self, ctx: GraphRunContext[Basket]) -> Add | Tear | End[Costly]:
        ctx.state.items.append(self.item)
        if self.item == 0:
            return Tear()
        return Add(self.item - 1, self.tag) if self.item > 1 else End(self.tag)


@dataclass
class Tear(BaseNode[Basket, None, Costly]):
    async def run(self, ctx: GraphRunContext[Basket]) -> End[Costly]:
        raise CountedError()


class Deciding(Sampler):
    """Keeps the spans whose name `keep` accepts, whatever their parent, noting the attributes each decision saw."""

    def __init__(self, keep: Callable[[str], bool]) -> None:
        self.keep = keep
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        self.seen.append((name, dict(attributes or {})))
        if not self.keep(name):
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return 'Deciding'


@pytest.fixture
def pipelines() -> Iterator[list[Pipeline]]:
    made: list[Pipeline] = []
    yield made
    for pipeline in made:
        pipeline.tracer_provider.shutdown()
        pipeline.meter_provider.shutdown()


def _graph(pipelines: list[Pipeline], sampler: Sampler | None) -> tuple[Graph[Basket, None, Costly], Pipeline]:
    pipeline = make_pipeline(sampler=sampler)
    pipelines.append(pipeline)
    graph = Graph(nodes=[Add, Tear], name='basket', instrumentation=pipeline.settings(state='diff'))
    return graph, pipeline


def _node_spans(pipeline: Pipeline) -> list[dict[str, Any]]:
    """The node spans' attributes, without the run id (which differs from run to run)."""
    return [
        {k: v for k, v in s.attributes.items() if k != attr.RUN_ID}
        for s in pipeline.spans
        if s.name.startswith('run node ')
    ]


def _durations(pipeline: Pipeline) -> dict[tuple[str, str], int]:
    points: list[HistogramDataPoint] = pipeline.metric_points(attr.METRIC_NODE_DURATION)
    return {(sdk_attributes(p)[attr.NODE_ID], sdk_attributes(p)[attr.NODE_OUTCOME]): p.count for p in points}


async def test_an_unsampled_run_builds_nothing_for_spans_nobody_keeps(pipelines: list[Pipeline]) -> None:
    graph, pipeline = _graph(pipelines, ParentBased(ALWAYS_OFF))
    tag, basket = Costly(), Basket()
    result = await graph.run(Add(3, tag), state=basket)
    assert result.output is tag
    CountedError.formatted = 0
    with pytest.raises(CountedError):
        await graph.run(Add(0, tag), state=Basket())
    assert CountedError.formatted == 0  # no exception event, no status message, no stack trace was formatted

    assert pipeline.spans == []
    # Not the node inputs, the states before and after each step, nor the run's output: nothing was serialised.
    assert (tag.serialised, basket.tag.serialised) == (0, 0)
    # The metrics count every step, sampled or not.
    assert _durations(pipeline) == {('Add', 'completed'): 4, ('Tear', 'failed'): 1}
    steps = pipeline.metric_points(attr.METRIC_RUN_STEPS)
    assert sum(p.value for p in steps) == 5
    # The history still names the (unrecorded) spans each step ran in, as it does for a sampled run.
    assert all(step.span_id is not None for step in result.history if step.kind == 'node')


async def test_a_sampler_keeping_node_spans_of_a_dropped_run_gets_the_whole_node_span(
    pipelines: list[Pipeline],
) -> None:
    sampled_graph, sampled = _graph(pipelines, None)
    sampler = Deciding(lambda name: name.startswith('run node '))
    nodes_only_graph, nodes_only = _graph(pipelines, sampler)
    for graph in (sampled_graph, nodes_only_graph):
        await graph.run(Add(2, Costly()), state=Basket())
        with pytest.raises(CountedError):
            await graph.run(Add(0, Costly()), state=Basket())

    assert [s.name for s in nodes_only.spans] == ['run node Add', 'run node Add', 'run node Add', 'run node Tear']
    assert _node_spans(nodes_only) == _node_spans(sampled)
    assert _node_spans(nodes_only)[0] == {
        'tracegraph.graph.name': 'basket',
        'tracegraph.node.id': 'Add',
        'tracegraph.step': 1,
        'tracegraph.node.input': '{"item":2,"tag":"Costly()"}',
        'tracegraph.node.next': 'Add',
        'tracegraph.node.outcome': 'completed',
        'tracegraph.state.diff': '{"items":{"old":[],"new":[2]}}',
    }
    failed = nodes_only.span('run node Tear')
    assert [(e.name, sdk_attributes(e)['exception.message']) for e in failed.events] == [
        ('exception', 'the basket tore')
    ]
    # Under a dropped run span the sampler decides on what names the step; the input is added once it records.
    node_decisions = [set(seen) for name, seen in sampler.seen if name.startswith('run node ')]
    assert node_decisions == [{attr.GRAPH_NAME, attr.RUN_ID, attr.NODE_ID, attr.NODE_STEP}] * 4
    assert _durations(nodes_only) == _durations(sampled) == {('Add', 'completed'): 3, ('Tear', 'failed'): 1}


async def test_a_sampled_run_gives_its_node_spans_every_attribute_at_start(pipelines: list[Pipeline]) -> None:
    sampler = Deciding(lambda name: True)
    graph, _ = _graph(pipelines, sampler)
    await graph.run(Add(1, Costly()), state=Basket())
    (run_name, run_start), (node_name, node_start) = sampler.seen
    assert (run_name, node_name) == ('run graph basket', 'run node Add')
    assert set(run_start) == {attr.GRAPH_NAME, attr.RUN_ID, attr.RUN_START_NODE, attr.GRAPH_EDGES}
    assert node_start[attr.NODE_INPUT] == '{"item":1,"tag":"Costly()"}'
