"""`configure()`: bad settings fail at once with a message naming them; the handle; joining an existing provider."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from exporters_helpers import Increment, counter_graph, make_spans
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from tracegraph.exporters import (
    ConfigurationError,
    MetricsOptions,
    SpoolOptions,
    TelemetryCapture,
    configure,
    read_spans,
)
from tracegraph.exporters import pipeline as exporters_pipeline
from tracegraph.exporters.settings import parse_headers, resolve_target

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ('kwargs', 'message'),
    [
        (
            {'endpoint': 'localhost:4318'},
            "Invalid OTLP endpoint 'localhost:4318' in endpoint=: "
            "expected an http:// or https:// URL such as 'http://localhost:4318'.",
        ),
        (
            {'endpoint': 'http://127.0.0.1:99999'},
            "Invalid OTLP endpoint 'http://127.0.0.1:99999' in endpoint=: Port out of range 0-65535.",
        ),
        (
            {'protocol': 'http/json'},
            "Unknown OTLP protocol 'http/json' in protocol=: expected 'http/protobuf' or 'grpc'.",
        ),
        (
            {'headers': 'authorization'},
            "Cannot read OTLP headers from headers=: 'authorization' is not a key=value pair "
            "(expected 'key1=value1,key2=value2').",
        ),
        (
            {'metrics': MetricsOptions(prometheus_port=70000)},
            'MetricsOptions.prometheus_port must be an integer from 0 to 65535, got 70000.',
        ),
        ({'spool': SpoolOptions(directory='.', max_bytes=0)}, 'SpoolOptions.max_bytes must be positive, got 0.'),
    ],
)
def test_bad_arguments_name_the_setting_and_value(kwargs: dict[str, object], message: str) -> None:
    threads = threading.active_count()
    with pytest.raises(ConfigurationError) as info:
        configure(set_global=False, **kwargs)  # pyright: ignore[reportArgumentType]
    assert str(info.value) == message
    assert threading.active_count() == threads  # nothing was half-built


@pytest.mark.parametrize(
    ('name', 'value', 'message'),
    [
        (
            'OTEL_EXPORTER_OTLP_ENDPOINT',
            'ftp://collector:21',
            "Invalid OTLP endpoint 'ftp://collector:21' in OTEL_EXPORTER_OTLP_ENDPOINT: "
            "expected an http:// or https:// URL such as 'http://localhost:4318'.",
        ),
        (
            'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
            'http://',
            "Invalid OTLP endpoint 'http://' in OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "
            "expected an http:// or https:// URL such as 'http://localhost:4318'.",
        ),
        (
            'OTEL_EXPORTER_OTLP_PROTOCOL',
            'grcp',
            "Unknown OTLP protocol 'grcp' in OTEL_EXPORTER_OTLP_PROTOCOL: expected 'http/protobuf' or 'grpc'.",
        ),
        (
            'OTEL_EXPORTER_OTLP_HEADERS',
            'a=1,,b',
            "Cannot read OTLP headers from OTEL_EXPORTER_OTLP_HEADERS: 'b' is not a key=value pair "
            "(expected 'key1=value1,key2=value2').",
        ),
    ],
)
def test_bad_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        configure(set_global=False)
    assert str(info.value) == message


def test_unwritable_spool_dir(tmp_path: Path) -> None:
    blocker = tmp_path / 'a-file'
    blocker.write_text('')
    with pytest.raises(ConfigurationError) as info:
        configure(spool=SpoolOptions(directory=blocker / 'spool'), set_global=False)
    assert str(info.value) == (
        f"SpoolOptions.directory '{blocker / 'spool'}' is not a writable directory: [Errno 20] Not a directory: '{blocker / 'spool'}'"
    )


def test_unopenable_file(tmp_path: Path) -> None:
    path = tmp_path / 'missing' / 'spans.jsonl'
    with pytest.raises(ConfigurationError) as info:
        configure(file=path, set_global=False)
    assert str(info.value) == (
        f"file '{path}' cannot be opened for appending: [Errno 2] No such file or directory: '{path}'"
    )


def test_prometheus_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigurationError) as info:
            configure(metrics=MetricsOptions(prometheus_port=port), set_global=False)
    assert (
        str(info.value)
        == f"MetricsOptions.prometheus_port {port} cannot be bound on '127.0.0.1': [Errno 98] Address already in use"
    )


def test_endpoint_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('OTEL_EXPORTER_OTLP_ENDPOINT', 'http://base:4318/')
    monkeypatch.setenv('OTEL_EXPORTER_OTLP_METRICS_ENDPOINT', 'http://metrics:9000/custom')
    monkeypatch.setenv('OTEL_EXPORTER_OTLP_HEADERS', 'a=1,b=2')
    monkeypatch.setenv('OTEL_EXPORTER_OTLP_TRACES_HEADERS', 'b=3')
    traces = resolve_target(endpoint=None, protocol=None, headers=None, signal='traces')
    assert (traces.protocol, traces.endpoint, traces.headers) == (
        'http/protobuf',
        'http://base:4318/v1/traces',
        {'a': '1', 'b': '3'},
    )
    metrics = resolve_target(endpoint=None, protocol=None, headers=None, signal='metrics')
    assert metrics.endpoint == 'http://metrics:9000/custom'
    given = resolve_target(endpoint='https://otlp.example.com', protocol='grpc', headers={'k': 'v'}, signal='traces')
    assert (given.endpoint, given.headers) == ('https://otlp.example.com', {'k': 'v'})
    monkeypatch.setenv('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'grpc')
    monkeypatch.delenv('OTEL_EXPORTER_OTLP_ENDPOINT')
    assert (
        resolve_target(endpoint=None, protocol=None, headers=None, signal='traces').endpoint == 'http://localhost:4317'
    )


def test_parse_headers_decodes_percent_escapes() -> None:
    assert parse_headers('api-key=a%3Db,  X-Mixed = 1 ', 'h') == {'api-key': 'a=b', 'x-mixed': '1'}


async def test_handle_is_a_context_manager_and_shuts_down_once(tmp_path: Path) -> None:
    path = tmp_path / 'spans.jsonl'
    telemetry = configure(file=path, set_global=False, metrics=False)
    with telemetry:
        await counter_graph(telemetry.tracer_provider).run(Increment(2))
        assert telemetry.force_flush()
        assert len(read_spans(path)) == 3
    telemetry.shutdown()  # a second call does nothing
    await counter_graph(telemetry.tracer_provider).run(Increment(2))
    assert len(read_spans(path)) == 3


async def test_joins_an_existing_global_provider_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, 'tracegraph.exporters')
    exporters_pipeline._announced_existing.clear()  # pyright: ignore[reportPrivateUsage]  # a once-per-process note
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(TracerProvider())  # the app's own provider, which configure() must join
    with TelemetryCapture.start() as capture:
        first = configure(file=tmp_path / 'a.jsonl', metrics=False)
        second = configure(file=tmp_path / 'b.jsonl', metrics=False)
        assert not first.owns_tracer_provider
        await counter_graph().run(Increment(2))
        assert first.force_flush()
        assert second.force_flush()
        first.shutdown()
        second.shutdown()
        await counter_graph().run(Increment(2))  # after shutdown, the files get nothing more
        assert len(capture.spans) == 6
    assert len(read_spans(tmp_path / 'a.jsonl')) == 3
    assert len(read_spans(tmp_path / 'b.jsonl')) == 3
    messages = [r.getMessage() for r in caplog.records if r.name == 'tracegraph.exporters']
    assert messages[0].startswith('tracegraph: a global TracerProvider (TracerProvider) already exists;')
    assert sum('global TracerProvider' in m for m in messages) == 1


def test_spans_made_without_a_graph_still_round_trip(tmp_path: Path) -> None:
    # configure() exporters are plain SDK processors: spans of any instrumentation go through them
    with configure(file=tmp_path / 's.jsonl', set_global=False, metrics=False) as telemetry:
        for processor in telemetry.span_processors:
            for span in make_spans():
                processor.on_end(span)
    assert len(read_spans(tmp_path / 's.jsonl')) == 4


def test_a_global_provider_that_takes_no_processors_is_a_clear_error() -> None:
    code = (
        'from opentelemetry import trace\n'
        'from tracegraph.exporters import ConfigurationError, configure\n'
        'trace.set_tracer_provider(trace.NoOpTracerProvider())\n'
        'try:\n'
        "    configure(file='/dev/null')\n"
        'except ConfigurationError as e:\n'
        '    print(e)\n'
    )
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        'set_global=True, but the global TracerProvider is a NoOpTracerProvider, which does not accept span '
        'processors; pass set_global=False and use the returned providers.\n'
    )


@pytest.mark.parametrize(
    ('variables', 'processors', 'readers'),
    [
        ({}, ['CountingBatchSpanProcessor'], ['PeriodicExportingMetricReader']),
        ({'OTEL_TRACES_EXPORTER': 'none'}, [], ['PeriodicExportingMetricReader']),
        ({'OTEL_TRACES_EXPORTER': 'console'}, ['ConsoleTimelineProcessor'], ['PeriodicExportingMetricReader']),
        (
            {'OTEL_TRACES_EXPORTER': 'otlp,console'},
            ['ConsoleTimelineProcessor', 'CountingBatchSpanProcessor'],
            ['PeriodicExportingMetricReader'],
        ),
        ({'OTEL_METRICS_EXPORTER': 'none'}, ['CountingBatchSpanProcessor'], []),
        ({'OTEL_TRACES_EXPORTER': 'none', 'OTEL_METRICS_EXPORTER': 'none'}, [], []),
    ],
)
def test_the_standard_exporter_variables_choose_the_exporters(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], processors: list[str], readers: list[str]
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with configure(set_global=False) as telemetry:
        assert [type(p).__name__ for p in telemetry.span_processors] == processors
        assert telemetry.meter_provider is not None
        found = telemetry.meter_provider._metric_readers  # pyright: ignore[reportPrivateUsage]  # the SDK has no public list
        assert [type(r).__name__ for r in found] == readers


def test_an_unknown_exporter_name_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('OTEL_TRACES_EXPORTER', 'zipkin')
    with pytest.raises(ConfigurationError) as info:
        configure(set_global=False)
    assert str(info.value) == (
        "OTEL_TRACES_EXPORTER='zipkin': tracegraph knows otlp, console and none (comma-separated), not zipkin."
    )


@pytest.mark.parametrize('variable', ['TRACEGRAPH_DISABLED', 'OTEL_SDK_DISABLED'])
async def test_disabled_builds_nothing(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, 'true' if variable.startswith('OTEL') else '1')
    with configure(set_global=False) as telemetry:
        assert telemetry.span_processors == [] and telemetry.meter_provider is None
        graph = counter_graph(telemetry.tracer_provider)
        assert (await graph.run(Increment(0))).output == 3
        assert telemetry.force_flush()


def test_traces_exporter_none_is_taken_as_asked_without_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv('OTEL_TRACES_EXPORTER', 'none')
    caplog.set_level('INFO', 'tracegraph.exporters')
    with configure(set_global=False, metrics=False) as telemetry:
        assert telemetry.span_processors == []
    assert [r.levelname for r in caplog.records if 'span exporter' in r.getMessage()] == ['INFO']


def test_metrics_only_says_spans_go_nowhere(caplog: pytest.LogCaptureFixture) -> None:
    with configure(set_global=False, metrics=MetricsOptions(prometheus_port=0)) as telemetry:
        assert telemetry.span_processors == []
    assert (
        'tracegraph: configure() built no span exporter, so spans go nowhere: pass endpoint= (or set '
        'OTEL_EXPORTER_OTLP_ENDPOINT), file=, console= or spool= to send them'
    ) in caplog.text
