"""The console exporter: one Rich timeline per run, printed when the run ends."""

from __future__ import annotations

import io
import re
from datetime import datetime, timedelta, timezone

import pytest
from exporters_helpers import Explode, Increment, counter_graph, make_spans
from opentelemetry.sdk.trace import TracerProvider
from rich.console import Console

from tracegraph.exporters import ConsoleTimelineProcessor, configure
from tracegraph.exporters.local.console import render_timeline
from tracegraph.tracing.timeline import NodeError, NodeRecord, NodeTimeline

pytestmark = pytest.mark.anyio


def _failed_timeline(graph: str, run_id: str, *steps: tuple[str, float, float, str | NodeError]) -> NodeTimeline:
    """A failed run's timeline: each step is (node, start and duration in seconds, its next node or its error)."""
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    nodes = [
        NodeRecord(
            step=number,
            node_id=node,
            span_id=None,
            start=t0 + timedelta(seconds=start),
            end=t0 + timedelta(seconds=start + duration),
            duration=duration,
            outcome='failed' if isinstance(then, NodeError) else 'completed',
            next_node=None if isinstance(then, NodeError) else then,
            error=then if isinstance(then, NodeError) else None,
        )
        for number, (node, start, duration, then) in enumerate(steps, 1)
    ]
    end = max(node.end for node in nodes)
    return NodeTimeline(run_id=run_id, trace_id=None, graph=graph, outcome='failed', start=t0, end=end, nodes=nodes)


def test_render_timeline_layout() -> None:
    timeline = _failed_timeline(
        'billing',
        'r1',
        ('Fetch', 0.0, 1.0, 'Charge'),
        ('Charge', 1.0, 0.0004, 'Notify'),
        ('Notify', 1.5, 1.5, NodeError(type='TimeoutError', message='smtp')),
    )
    out = io.StringIO()
    Console(file=out, width=100).print(render_timeline(timeline, width=20))
    assert [line.rstrip() for line in out.getvalue().splitlines()] == [
        'billing  run r1  failed  3.000s',
        'step  node    timeline              duration  outcome',
        '   1  Fetch   ███████                 1.000s  completed → Charge',
        '   2  Charge        █                  400µs  completed → Notify',
        '   3  Notify            ██████████    1.500s  failed  TimeoutError: smtp',
    ]


async def test_a_real_run_prints_one_timeline_when_it_ends() -> None:
    out = io.StringIO()
    processor = ConsoleTimelineProcessor(out)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    graph = counter_graph(provider)
    await graph.run(Increment(1))
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    assert re.fullmatch(r'counter  run [0-9a-f]{32}  completed  \d+(\.\d{1,3})?(µs|ms|s)', lines[0])
    assert lines[1].split() == ['step', 'node', 'timeline', 'duration', 'outcome']
    assert [re.sub(r'[█ ]+', ' ', line).split(' ', 3)[:3] for line in lines[2:]] == [
        ['', '1', 'Increment'],
        ['', '2', 'Increment'],
        ['', '3', 'Increment'],
    ]
    assert [line.split('  ')[-1] for line in lines[2:]] == [
        'completed → Increment',
        'completed → Increment',
        'completed → End',
    ]

    out.truncate(0)
    out.seek(0)
    with pytest.raises(ValueError, match='boom'):
        await graph.run(Explode())
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    assert len(lines) == 3  # header, column titles, the one failed step
    assert lines[0].split('  ')[2] == 'failed'
    assert lines[2].endswith('failed  ValueError: boom')
    provider.shutdown()


async def test_configure_console_writes_to_the_given_stream() -> None:
    out = io.StringIO()
    with configure(console=out, metrics=False, set_global=False) as telemetry:
        await counter_graph(telemetry.tracer_provider).run(Increment(3))
    assert out.getvalue().count('counter  run ') == 1
    assert 'completed → End' in out.getvalue()


def test_spans_outside_runs_are_ignored_and_pending_runs_are_bounded() -> None:
    out = io.StringIO()
    processor = ConsoleTimelineProcessor(out, max_pending_runs=2)
    spans = make_spans(runs=3, nodes=2)
    node_spans = [s for s in spans if s.name.startswith('run node')]
    run_spans = [s for s in spans if s.name.startswith('run graph')]
    run_ids = [str((s.attributes or {})['tracegraph.run.id']) for s in run_spans]
    for span in node_spans:
        processor.on_end(span)
    assert processor.pending_runs == run_ids[1:]  # the first run was forgotten
    for span in run_spans:
        processor.on_end(span)
    text = out.getvalue()
    assert [line.split()[2] for line in text.splitlines() if line.startswith('g  run ')] == run_ids
    assert text.count('completed → ') == 4  # the first run printed without its forgotten node steps


@pytest.mark.parametrize('columns', [80, 100, 120])
def test_a_failed_run_keeps_every_column_in_a_narrow_terminal(columns: int) -> None:
    message = 'payment gateway refused the connection after 3 retries: upstream 503 Service Unavailable'
    timeline = _failed_timeline(
        'checkout_pipeline',
        '6fc3154832274c809eaae88865201c7f',
        ('FetchCustomerRecords', 0.0, 1.5, 'ChargeCard'),
        ('ChargeCard', 1.5, 0.5, NodeError(type='ConnectionError', message=message)),
    )
    out = io.StringIO()
    Console(file=out, width=columns, highlight=False, soft_wrap=False).print(render_timeline(timeline))
    lines = out.getvalue().splitlines()
    assert all(len(line.rstrip()) <= columns for line in lines)
    first = next(line for line in lines if 'FetchCustomerRecords' in line)
    failed = next(line for line in lines if re.match(r'\s*2\s+ChargeCard\s', line))
    assert re.match(r'\s*1\s+FetchCustomerRecords\s+█+\s+1\.500s\s+completed → ChargeCard', first), first
    assert re.search(r'█+\s+500\.0ms\s+failed\s+ConnectionError:', failed), failed
    # The error's message is wrapped in its column, not cut: below its row, only the outcome column has text.
    assert f'ConnectionError: {message}' in ' '.join(out.getvalue().split())
