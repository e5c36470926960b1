"""Metrics, timelines, resume links and scrubbing, through a real OpenTelemetry SDK pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from datetime import timedelta

import pydantic
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics._internal.exemplar import AlwaysOnExemplarFilter
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from tracing_helpers import Pipeline, make_pipeline, sdk_attributes

from tracegraph import BaseNode, End, Graph, GraphRunContext, NodeStep, NodeTimeline, ScrubbingOptions
from tracegraph.exporters.metrics.sdk_merge_gate import merge_enabled
from tracegraph.tracing import attributes as attr
from tracegraph.tracing import instrument

pytestmark = pytest.mark.anyio


@dataclass
class Step(BaseNode[None, None, int]):
    n: int

    async def run(self, ctx: GraphRunContext) -> Step | Boom | End[int]:
        if self.n < 0:
            return Boom()
        return Step(self.n - 1) if self.n > 0 else End(7)


@dataclass
class Boom(BaseNode[None, None, int]):
    async def run(self, ctx: GraphRunContext) -> End[int]:
        raise RuntimeError('kaboom')


async def test_metrics(otel: Pipeline) -> None:
    graph = Graph(nodes=[Step, Boom], name='steps', instrumentation=otel.settings())
    await graph.run(Step(2))
    with pytest.raises(RuntimeError):
        await graph.run(Step(-1))

    node_points: list[HistogramDataPoint] = otel.metric_points(attr.METRIC_NODE_DURATION)
    by_key = {(sdk_attributes(p)[attr.NODE_ID], sdk_attributes(p)[attr.NODE_OUTCOME]): p for p in node_points}
    assert set(by_key) == {('Step', 'completed'), ('Boom', 'failed')}
    assert by_key['Step', 'completed'].count == 4
    assert all(sdk_attributes(p)[attr.GRAPH_NAME] == 'steps' for p in node_points)
    assert tuple(by_key['Step', 'completed'].explicit_bounds) == attr.DURATION_BUCKETS
    assert attr.DURATION_BUCKETS[0] == 0.0001 and attr.DURATION_BUCKETS[-1] == 600.0

    run_points: list[HistogramDataPoint] = otel.metric_points(attr.METRIC_RUN_DURATION)
    assert {sdk_attributes(p)[attr.RUN_OUTCOME]: p.count for p in run_points} == {'completed': 1, 'failed': 1}
    steps: list[NumberDataPoint] = otel.metric_points(attr.METRIC_RUN_STEPS)
    assert [(dict(p.attributes or {}), p.value) for p in steps] == [({attr.GRAPH_NAME: 'steps'}, 5)]


def _steps_counted(otel: Pipeline) -> float:
    return sum(p.value for p in otel.metric_points(attr.METRIC_RUN_STEPS))


@pytest.mark.skipif(not merge_enabled(), reason='the step counter is handed over at collection by the gated SDK merge')
async def test_steps_are_counted_at_every_collection_on_the_sdk(otel: Pipeline) -> None:
    graph = Graph(nodes=[Step, Boom], name='steps', instrumentation=otel.settings())
    async with graph.iter(Step(5)) as run:
        for expected in (1, 2, 3):
            await run.next()
            assert _steps_counted(otel) == expected
    assert _steps_counted(otel) == 3


async def test_steps_are_counted_in_batches_and_all_by_the_end_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the step count cannot be handed over at collection (here: an exemplar filter the pre-aggregation
    does not replay, so the SDK records every duration itself), steps are added in batches."""
    traced = make_pipeline()
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], exemplar_filter=AlwaysOnExemplarFilter())
    otel = Pipeline(traced.tracer_provider, traced.exporter, meter_provider, reader)
    graph = Graph(nodes=[Step, Boom], name='steps', instrumentation=otel.settings())
    monkeypatch.setattr(instrument, '_STEP_COUNT_INTERVAL_NS', 3600 * 10**9)
    async with graph.iter(Step(5)) as run:
        for _ in range(3):
            await run.next()
        assert _steps_counted(otel) == 0  # not counted yet: the batch waits up to the interval
    assert _steps_counted(otel) == 3  # leaving the run counts what it ran

    monkeypatch.setattr(instrument, '_STEP_COUNT_INTERVAL_NS', 0)
    async with graph.iter(Step(5)) as run:
        await run.next()
        await run.next()
        assert _steps_counted(otel) == 5  # interval elapsed: counted as they run
        async for _ in run:
            pass
    assert _steps_counted(otel) == 3 + 6


async def test_node_duration_exemplars_name_the_node_span(otel: Pipeline) -> None:
    graph = Graph(nodes=[Step, Boom], name='steps', instrumentation=otel.settings())
    await graph.run(Step(1))
    node_span_ids = {s.context.span_id for s in otel.spans if s.name == 'run node Step'}
    (point,) = otel.metric_points(attr.METRIC_NODE_DURATION)
    assert point.exemplars
    assert {e.span_id for e in point.exemplars} <= node_span_ids


async def test_metrics_can_be_turned_off(otel: Pipeline) -> None:
    graph = Graph(nodes=[Step, Boom], name='steps', instrumentation=otel.settings(metrics=False))
    await graph.run(Step(1))
    assert otel.metric_points(attr.METRIC_NODE_DURATION) == []
    assert len(otel.spans) == 3


async def test_timeline_from_run_and_from_spans_agree(otel: Pipeline) -> None:
    graph = Graph(nodes=[Step, Boom], name='steps', instrumentation=otel.settings())
    result = await graph.run(Step(2))
    live = result.timeline
    from_spans = NodeTimeline.from_spans(otel.spans)
    assert [n.node_id for n in live.nodes] == ['Step', 'Step', 'Step']
    assert [n.next_node for n in live.nodes] == ['Step', 'Step', 'End']
    assert live.model_dump(exclude={'start', 'end', 'nodes'}) == from_spans.model_dump(
        exclude={'start', 'end', 'nodes'}
    )
    for a, b in zip(live.nodes, from_spans.nodes, strict=True):
        assert a.model_dump(exclude={'start', 'end', 'duration'}) == b.model_dump(exclude={'start', 'end', 'duration'})
        # The node span holds the node's run (timed by the engine) and the tracing around it, on the spans' clock.
        assert b.start <= a.start and b.end + timedelta(microseconds=1) >= a.start + timedelta(seconds=a.duration)
    assert live.outcome == 'completed' and live.trace_id == result.trace_id


async def test_failed_run_timeline(otel: Pipeline) -> None:
    graph = Graph(nodes=[Step, Boom], name='steps', instrumentation=otel.settings())
    with pytest.raises(RuntimeError):
        async with graph.iter(Step(-1)) as run:
            async for _ in run:
                pass
    live, from_spans = run.timeline, NodeTimeline.from_spans(otel.spans)  # pyright: ignore[reportPossiblyUnboundVariable]  # bound before it raised
    assert [(n.node_id, n.outcome, n.next_node) for n in live.nodes] == [
        ('Step', 'completed', 'Boom'),
        ('Boom', 'failed', None),
    ]
    assert [(n.node_id, n.outcome, n.next_node) for n in from_spans.nodes] == [
        ('Step', 'completed', 'Boom'),
        ('Boom', 'failed', None),
    ]
    assert live.outcome == from_spans.outcome == 'failed'
    assert live.nodes[1].error is not None and from_spans.nodes[1].error is not None
    assert (live.nodes[1].error.type, live.nodes[1].error.message) == ('RuntimeError', 'kaboom')
    assert (from_spans.nodes[1].error.type, from_spans.nodes[1].error.message) == ('RuntimeError', 'kaboom')
    assert from_spans.nodes[1].error.traceback is not None and 'kaboom' in from_spans.nodes[1].error.traceback
    assert live.nodes[1].span_id == from_spans.nodes[1].span_id
    rendered = from_spans.render(width=10)
    assert rendered.splitlines()[0].startswith(f'steps  run {live.run_id}  failed')
    assert rendered.splitlines()[2].endswith('failed  RuntimeError: kaboom')


async def test_from_spans_errors(otel: Pipeline) -> None:
    with pytest.raises(ValueError, match=r'^No tracegraph run found in the spans\.$'):
        NodeTimeline.from_spans([])
    graph = Graph(nodes=[Step, Boom], name='steps', instrumentation=otel.settings())
    a, b = await graph.run(Step(0)), await graph.run(Step(0))
    with pytest.raises(ValueError, match=r'^The spans hold 2 runs \(.*\); pass `run_id=` to choose one\.$'):
        NodeTimeline.from_spans(otel.spans)
    assert NodeTimeline.from_spans(otel.spans, run_id=b.timeline.run_id).trace_id == b.trace_id
    assert [t.trace_id for t in NodeTimeline.all_from_spans(otel.spans)] == [a.trace_id, b.trace_id]


async def test_resumed_run_links_to_the_trace_it_came_from(otel: Pipeline) -> None:
    graph = Graph(nodes=[Step, Boom], name='steps', instrumentation=otel.settings())
    async with graph.iter(Step(3)) as first:
        await first.next()
        next_node = await first.next()
    assert 'trace_id' not in json.loads(graph.dump_history(first.history))[1]  # the classic format by default
    saved = graph.dump_history(first.history, trace_ids=True)
    assert json.loads(saved)[1]['trace_id'] == first.trace_id

    history = graph.load_history(saved)
    last = history[-1]
    assert isinstance(last, NodeStep) and last.trace_id == first.trace_id and last.span_id is not None
    assert isinstance(next_node, BaseNode)
    async with graph.iter(next_node, history=history) as second:
        async for _ in second:
            pass
    assert second.trace_id != first.trace_id
    run_spans = [s for s in otel.spans if s.name == 'run graph steps']
    resumed = next(s for s in run_spans if f'{s.context.trace_id:032x}' == second.trace_id)
    assert resumed.attributes[attr.RUN_RESUMED_FROM] == first.trace_id
    assert [(f'{link.context.trace_id:032x}', f'{link.context.span_id:016x}') for link in resumed.links] == [
        (first.trace_id, last.span_id)
    ]
    original = next(s for s in run_spans if f'{s.context.trace_id:032x}' == first.trace_id)
    assert original.attributes[attr.RUN_OUTCOME] == 'interrupted'


class Credentials(pydantic.BaseModel):
    user: str
    password: str


class Profile(pydantic.BaseModel):
    name: str
    creds: Credentials
    Session_Token: str = 'abc'
    notes: list[dict[str, str]] = []


@dataclass
class Login(BaseNode[None, None, Profile]):
    profile: Profile
    headers: dict[str, str] = field(default_factory=dict[str, str])

    async def run(self, ctx: GraphRunContext) -> End[Profile]:
        return End(self.profile)


async def test_scrubbing_nested_models(otel: Pipeline) -> None:
    profile = Profile(
        name='ada',
        creds=Credentials(user='ada', password='hunter2'),
        notes=[{'text': 'hello', 'apiKey': 'k-1'}, {'credit_card': '4111'}],
    )
    graph = Graph(nodes=[Login], name='login', instrumentation=otel.settings())
    await graph.run(Login(profile, headers={'Authorization': 'Bearer xyz', 'Accept': 'json', 'author': 'me'}))
    node_input = json.loads(otel.span('run node Login').attributes[attr.NODE_INPUT])
    assert node_input == {
        'profile': {
            'name': 'ada',
            'creds': {'user': 'ada', 'password': '[Scrubbed]'},
            'Session_Token': '[Scrubbed]',
            'notes': [{'text': 'hello', 'apiKey': '[Scrubbed]'}, {'credit_card': '[Scrubbed]'}],
        },
        'headers': {'Authorization': '[Scrubbed]', 'Accept': 'json', 'author': 'me'},
    }
    output = otel.span('run graph login').attributes[attr.RUN_OUTPUT]
    assert 'hunter2' not in output and 'k-1' not in output


async def test_scrubbing_options(otel: Pipeline) -> None:
    options = ScrubbingOptions(extra_patterns=['name'], callback=lambda m: m.value if m.path[-1] == 'user' else None)
    graph = Graph(nodes=[Login], name='login', instrumentation=otel.settings(scrub=options))
    await graph.run(Login(Profile(name='ada', creds=Credentials(user='ada', password='x'))))
    node_input = json.loads(otel.span('run node Login').attributes[attr.NODE_INPUT])
    assert node_input['profile']['name'] == '[Scrubbed]'
    assert node_input['profile']['creds'] == {'user': 'ada', 'password': '[Scrubbed]'}

    otel.exporter.clear()
    graph = Graph(nodes=[Login], name='login', instrumentation=otel.settings(scrub=False))
    await graph.run(Login(Profile(name='ada', creds=Credentials(user='ada', password='x'))))
    assert '"password":"x"' in otel.span('run node Login').attributes[attr.NODE_INPUT]


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith('OTEL_')}
    return subprocess.run(
        [sys.executable, '-W', 'error', '-c', textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


NEVER_42 = """
    import asyncio, logging
    from dataclasses import dataclass
    from tracegraph import BaseNode, End, Graph, GraphRunContext
    from tracegraph.tracing.runtrace import RunTrace

    @dataclass
    class Hop(BaseNode[None, None, int]):
        n: int
        async def run(self, ctx: GraphRunContext) -> 'Hop | End[int]':
            return Hop(self.n + 1) if self.n < 3 else End(self.n)

    hops = Graph(nodes=[Hop])
"""


def test_no_sdk_means_no_span_work_and_no_output() -> None:
    proc = _run_python(
        NEVER_42
        + """
    logging.basicConfig(level=logging.DEBUG)
    logging.getLogger('asyncio').setLevel(logging.WARNING)
    async def main():
        async with hops.iter(Hop(0)) as run:
            async for _ in run:
                pass
            assert type(run._trace) is RunTrace, 'span work was done with no SDK configured'
            assert run.trace_id is None
        print(run.result.output, run.timeline.outcome, len(run.timeline.nodes))
    asyncio.run(main())
    """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == '3 completed 4\n'
    assert proc.stderr == ''


def test_logfire_configured_sees_the_spans_with_their_messages() -> None:
    proc = _run_python(
        NEVER_42
        + """
    import logfire
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    logfire.configure(
        send_to_logfire=False, console=False, inspect_arguments=False,
        additional_span_processors=[SimpleSpanProcessor(exporter)],
    )
    asyncio.run(hops.run(Hop(1)))
    asyncio.run(hops.run(Hop(2), span=logfire.span('agent run {user}', user='ada')))
    spans = exporter.get_finished_spans()
    for span in spans:
        print(span.name, '|', span.attributes.get('logfire.msg'), '|', span.attributes.get('logfire.span_type'))
    mine = spans[-1]
    print(mine.attributes['tracegraph.run.outcome'], mine.attributes['tracegraph.graph.name'])
    print(all(s.parent.span_id == mine.context.span_id for s in spans[-3:-1]))
    """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        'run node Hop | run node Hop | span',
        'run node Hop | run node Hop | span',
        'run node Hop | run node Hop | span',
        'run graph hops | run graph hops | span',
        'run node Hop | run node Hop | span',
        'run node Hop | run node Hop | span',
        'agent run {user} | agent run ada | span',
        'completed hops',
        'True',
    ]


def test_the_sdk_merge_is_gated_to_tested_sdk_versions() -> None:
    """The merge writes SDK internals: open exactly on the versions it is tested on, closed (one `record` a step)
    elsewhere, so a future SDK that keeps the types but changes their meaning is never written into."""
    from importlib.metadata import version

    from tracegraph._merge_binders import binder_for
    from tracegraph.exporters.metrics import sdk_merge_gate
    from tracegraph.tracing.preaggregated import PreAggregatedHistogram, duration_recorder

    installed = version('opentelemetry-sdk')
    assert sdk_merge_gate.merge_enabled() == (installed in sdk_merge_gate.MERGE_TESTED_SDK_VERSIONS)
    provider = MeterProvider()
    histogram = provider.get_meter('gate').create_histogram('gate.duration', unit='s')
    assert binder_for(histogram) is sdk_merge_gate.bind
    recorder = duration_recorder(provider.get_meter('gate'), 'gate.duration', histogram)
    assert isinstance(recorder, PreAggregatedHistogram) == sdk_merge_gate.merge_enabled()
    provider.shutdown()
