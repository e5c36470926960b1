"""The `tracegraph_capture` pytest fixture (loaded through the `pytest11` entry point) and `TelemetryCapture`."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, cast

import pytest
from exporters_helpers import Explode, Increment, counter_graph

from tracegraph.exporters import MetricPoint, TelemetryCapture
from tracegraph.tracing import attributes as attr

pytestmark = pytest.mark.anyio


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    entry_points = importlib.metadata.entry_points(group='pytest11')
    assert [ep.value for ep in entry_points if ep.name == 'tracegraph'] == [
        'tracegraph.exporters.testing.pytest_plugin'
    ]


def test_importing_the_plugin_loads_none_of_the_exporters() -> None:
    # pytest imports the plugin in every run of every project with tracegraph installed: it must stay light
    code = (
        'import sys, tracegraph.exporters.testing.pytest_plugin\n'
        "print(sorted(m for m in sys.modules if m.startswith('tracegraph.exporters.')))"
    )
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # The `testing` package around it is an empty `__init__`.
    assert done.stdout == "['tracegraph.exporters.testing', 'tracegraph.exporters.testing.pytest_plugin']\n"


async def test_captures_spans_timelines_and_metrics(tracegraph_capture: TelemetryCapture) -> None:
    await counter_graph().run(Increment(0))
    assert tracegraph_capture.span_names() == ['run node Increment'] * 4 + ['run graph counter']
    (timeline,) = tracegraph_capture.timelines()
    assert (timeline.graph, timeline.outcome) == ('counter', 'completed')
    assert [(n.step, n.node_id, n.next_node) for n in timeline.nodes] == [
        (1, 'Increment', 'Increment'),
        (2, 'Increment', 'Increment'),
        (3, 'Increment', 'Increment'),
        (4, 'Increment', 'End'),
    ]
    (node_duration,) = tracegraph_capture.metrics(attr.METRIC_NODE_DURATION)
    assert node_duration.kind == 'histogram'
    assert node_duration.unit == 's'
    assert node_duration.count == 4
    assert node_duration.explicit_bounds == attr.DURATION_BUCKETS
    assert sum(node_duration.bucket_counts) == 4
    assert node_duration.attributes == {
        attr.GRAPH_NAME: 'counter',
        attr.NODE_ID: 'Increment',
        attr.NODE_OUTCOME: 'completed',
    }
    assert tracegraph_capture.metrics(attr.METRIC_RUN_STEPS) == [
        MetricPoint(
            name=attr.METRIC_RUN_STEPS, unit='{step}', attributes={attr.GRAPH_NAME: 'counter'}, kind='sum', value=4
        )
    ]


async def test_each_test_sees_only_its_own_telemetry(tracegraph_capture: TelemetryCapture) -> None:
    # the previous test ran the same graph: neither its spans nor its metrics show up here
    with pytest.raises(ValueError, match='boom'):
        await counter_graph().run(Explode())
    assert tracegraph_capture.span_names() == ['run node Explode', 'run graph counter']
    (timeline,) = tracegraph_capture.timelines()
    assert timeline.outcome == 'failed'
    assert timeline.nodes[0].error is not None
    assert timeline.nodes[0].error.message == 'boom'
    (steps,) = tracegraph_capture.metrics(attr.METRIC_RUN_STEPS)
    assert steps.value == 1
    (run_duration,) = tracegraph_capture.metrics(attr.METRIC_RUN_DURATION)
    assert run_duration.attributes == {attr.GRAPH_NAME: 'counter', attr.RUN_OUTCOME: 'failed'}


async def test_metrics_accumulate_across_reads_and_clear_resets(tracegraph_capture: TelemetryCapture) -> None:
    graph = counter_graph()
    await graph.run(Increment(2))
    assert tracegraph_capture.metrics(attr.METRIC_RUN_STEPS)[0].value == 2
    await graph.run(Increment(2))
    assert tracegraph_capture.metrics(attr.METRIC_RUN_STEPS)[0].value == 4  # the second read adds, not replaces
    assert len(tracegraph_capture.timelines()) == 2
    tracegraph_capture.clear()
    assert tracegraph_capture.spans == []
    assert tracegraph_capture.metrics() == []


def test_runs_in_other_threads_are_captured(tracegraph_capture: TelemetryCapture) -> None:
    thread = threading.Thread(target=lambda: asyncio.run(counter_graph().run(Increment(1))))
    thread.start()
    thread.join()
    assert tracegraph_capture.span_names()[-1] == 'run graph counter'


def test_plain_sdk_spans_are_captured_once_the_app_has_a_global_provider(tmp_path: Path) -> None:
    """Without a global provider the capture sees tracegraph's runs only; with the app's own, its spans too."""
    (tmp_path / 'test_app_spans.py').write_text(
        textwrap.dedent(
            """
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider


            def test_without_a_global_provider(tracegraph_capture):
                with trace.get_tracer('mine').start_as_current_span('not recorded'):
                    pass
                assert tracegraph_capture.span_names() == []


            def test_with_the_apps_provider(tracegraph_capture):
                trace.set_tracer_provider(TracerProvider())
                from tracegraph.exporters import TelemetryCapture

                with TelemetryCapture.start() as capture:
                    with trace.get_tracer('mine').start_as_current_span('mine'):
                        pass
                assert capture.span_names() == ['mine']
            """
        )
    )
    done = _pytest_session(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '2 passed' in done.stdout


def test_nested_captures_restore_the_outer_one(tracegraph_capture: TelemetryCapture) -> None:
    graph = counter_graph()
    with TelemetryCapture.start() as inner:
        graph.run_sync(Increment(1))
    graph.run_sync(Increment(2))
    assert [len(t.nodes) for t in inner.timelines()] == [3]  # Increment(1): 1, 2, 3
    assert [len(t.nodes) for t in tracegraph_capture.timelines()] == [2]


def test_the_pytest_plugin_imports_nothing_heavy() -> None:
    """pytest loads the plugin in every run of every project with tracegraph installed: only pytest comes with it."""
    code = (
        'import sys\n'
        'before = set(sys.modules)\n'
        'import pytest\n'
        'with_pytest = set(sys.modules)\n'
        'import tracegraph.exporters.testing.pytest_plugin\n'
        'print(sorted(m.split(".")[0] for m in set(sys.modules) - with_pytest if not m.startswith("tracegraph")))\n'
        'print(sorted(m for m in sys.modules if m.startswith("tracegraph")))\n'
    )
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    others, ours = done.stdout.splitlines()
    assert others == '[]'
    assert ours == (
        "['tracegraph', 'tracegraph._version', 'tracegraph.exporters', 'tracegraph.exporters.testing', "
        "'tracegraph.exporters.testing.pytest_plugin']"
    )


async def test_spans_as_dicts_are_the_same_from_one_run_to_the_next() -> None:
    dumps: list[list[dict[str, object]]] = []
    for _ in range(2):
        with TelemetryCapture.start() as capture:
            await counter_graph().run(Increment(2))
            with pytest.raises(ValueError, match='boom'):
                await counter_graph().run(Explode())
            dumps.append(capture.spans_as_dicts())
    assert dumps[0] == dumps[1]  # ids, times and run ids normalised
    spans = dumps[0]
    assert [(s['name'], s['context'], s['parent']) for s in spans] == [
        ('run node Increment', {'trace_id': 1, 'span_id': 1}, {'span_id': 2}),
        ('run node Increment', {'trace_id': 1, 'span_id': 3}, {'span_id': 2}),
        ('run graph counter', {'trace_id': 1, 'span_id': 2}, None),
        ('run node Explode', {'trace_id': 2, 'span_id': 4}, {'span_id': 5}),
        ('run graph counter', {'trace_id': 2, 'span_id': 5}, None),
    ]
    starts = [s['start_time'] for s in spans]
    assert starts == [2_000_000_000, 4_000_000_000, 1_000_000_000, 8_000_000_000, 7_000_000_000]
    assert [cast(dict[str, Any], s['attributes'])[attr.RUN_ID] for s in spans] == ['run-1'] * 3 + ['run-2'] * 2
    (event,) = cast(list[dict[str, Any]], spans[3]['events'])
    assert event['name'] == 'exception' and event['attributes']['exception.stacktrace'] == 'ValueError: boom'


def test_a_capture_exports_to_arrow_and_pandas() -> None:
    with TelemetryCapture.start() as capture:
        graph = counter_graph()
        graph.run_sync(Increment(1))
        with pytest.raises(ValueError, match='boom'):
            graph.run_sync(Explode())
        table = capture.to_arrow()
        frame = capture.to_pandas()
    from tracegraph.exporters.testing.spantables import SPAN_ROW_FIELDS

    assert table.column_names == list(SPAN_ROW_FIELDS)
    assert table.num_rows == len(capture.spans)
    nodes = frame[frame['node_id'].notna()]
    assert set(zip(nodes['node_id'], nodes['outcome'])) == {('Explode', 'failed'), ('Increment', 'completed')}
    runs = frame[frame['name'] == 'run graph counter']
    assert list(runs['outcome']) == ['completed', 'failed'] and (runs['duration'] >= 0).all()
    assert set(frame['trace_id'].str.len()) == {32} and str(frame['start'].dtype).startswith('datetime64')


def test_capture_metrics_work_beside_logfires_capfire(tmp_path: Path) -> None:
    """`capfire` sets the global MeterProvider first; tracegraph's metrics then go to it and to the capture."""
    (tmp_path / 'test_both.py').write_text(
        textwrap.dedent(
            """
            from exporters_helpers import Increment, counter_graph


            def test_both(capfire, tracegraph_capture):
                counter_graph().run_sync(Increment(1))
                (point,) = tracegraph_capture.metrics('tracegraph.run.duration')
                assert point.count == 1
                steps = [p for p in tracegraph_capture.metrics('tracegraph.node.duration')]
                node_spans = [n for n in tracegraph_capture.span_names() if n.startswith('run node')]
                assert sum(p.count for p in steps) == len(node_spans) > 0
                names = {m['name'] for m in capfire.get_collected_metrics()}
                assert {'tracegraph.node.duration', 'tracegraph.run.duration'} <= names  # capfire still sees them
                assert [s.name for s in capfire.exporter.exported_spans][-1] == 'run graph counter'
                assert tracegraph_capture.span_names()[-1] == 'run graph counter'
            """
        )
    )
    done = _pytest_session(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_capture_before_capfire_leaves_capfire_every_graph_span(tmp_path: Path) -> None:
    """Order does not matter: a `tracegraph_capture` test first must not take the providers `capfire` needs."""
    (tmp_path / 'test_order.py').write_text(
        textwrap.dedent(
            """
            from exporters_helpers import Increment, counter_graph


            def test_1_capture_first(tracegraph_capture):
                counter_graph().run_sync(Increment(1))
                assert tracegraph_capture.span_names()[-1] == 'run graph counter'


            def test_2_capfire_after(capfire):
                counter_graph().run_sync(Increment(1))
                assert [s.name for s in capfire.exporter.exported_spans][-1] == 'run graph counter'
                names = {m['name'] for m in capfire.get_collected_metrics()}
                assert {'tracegraph.node.duration', 'tracegraph.run.duration'} <= names


            def test_3_capfire_again_and_capture(capfire, tracegraph_capture):
                counter_graph().run_sync(Increment(1))
                assert [s.name for s in capfire.exporter.exported_spans][-1] == 'run graph counter'
                assert tracegraph_capture.span_names()[-1] == 'run graph counter'
                (point,) = tracegraph_capture.metrics('tracegraph.run.duration')
                assert point.count == 1
            """
        )
    )
    done = _pytest_session(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '3 passed' in done.stdout


def _pytest_session(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """A pytest session of the test files written into `tmp_path`, in file order, with these tests' helpers."""
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).parent)}
    env.pop('LOGFIRE_TOKEN', None)
    return subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-p', 'no:randomly', str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )  # fmt: skip
