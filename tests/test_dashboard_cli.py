"""`tracegraph serve` as a user runs it: a real process on an ephemeral loopback port."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from serve_helpers import emit_run, exporting_provider, serve_process
from typer.testing import CliRunner

from tracegraph.cli import app
from tracegraph.dashboard.server.server import is_loopback


@pytest.fixture
def served_with_retention(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    with serve_process(tmp_path / 'data', '--retention-days', '30', banner_lines=6) as served:
        yield served.proc, served.banner


def test_serve_prints_where_and_serves(
    served_with_retention: tuple[subprocess.Popen[str], list[str]], tmp_path: Path
) -> None:
    proc, banner = served_with_retention
    assert banner[0].startswith('tracegraph dashboard  http://127.0.0.1:'), banner
    url = banner[0].split()[-1]
    db = tmp_path / 'data' / 'tracegraph' / 'traces.duckdb'
    grpc_url = banner[3].split('OTEL_EXPORTER_OTLP_ENDPOINT=')[1].split()[0]
    assert grpc_url.startswith('http://127.0.0.1:') and grpc_url != url
    assert banner[1:6] == [
        f'  store      {db}',
        f'  ingest     OTLP/HTTP  OTEL_EXPORTER_OTLP_ENDPOINT={url}',
        f'             OTLP/gRPC  OTEL_EXPORTER_OTLP_ENDPOINT={grpc_url} OTEL_EXPORTER_OTLP_PROTOCOL=grpc',
        '  auth       off: anyone who can reach the port can send spans and read them',
        '  retention  30 days',
    ]
    with exporting_provider(url) as (provider, _):
        run = emit_run(provider)
    over_grpc = TracerProvider()
    over_grpc.add_span_processor(SimpleSpanProcessor(GrpcSpanExporter(endpoint=grpc_url, insecure=True)))
    run_grpc = emit_run(over_grpc, graph='via-grpc')  # the real OTLP/gRPC exporter, as the SDKs default to
    over_grpc.shutdown()
    with httpx.Client(base_url=url, timeout=10) as c:
        assert [r['run_id'] for r in c.get('/api/runs').json()] == [run_grpc.run_id, run.run_id]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 0
    assert db.exists()


def test_warns_when_exposed_without_token() -> None:
    # A listener on 127.0.0.1 makes binding every interface on the same port fail: the warning is shown
    # without this test ever listening beyond loopback.
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ['serve', '--host', '0.0.0.0', '--port', str(port)], env={'COLUMNS': '250'})
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        'warning: binding 0.0.0.0 without --token: anyone who can reach this port can send spans and read your traces.',
        f'error: cannot listen on 0.0.0.0:{port}: Address already in use',
    ]


def test_no_warning_on_loopback_or_with_token() -> None:
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        runner = CliRunner()
        local = runner.invoke(app, ['serve', '--port', str(port)], env={'COLUMNS': '250'})
        tokened = runner.invoke(
            app,
            ['serve', '--host', '0.0.0.0', '--port', str(port), '--token', 'a-token-of-24-characters'],
            env={'COLUMNS': '250'},
        )
    assert local.output.splitlines() == [f'error: cannot listen on 127.0.0.1:{port}: Address already in use']
    assert tokened.output.splitlines() == [f'error: cannot listen on 0.0.0.0:{port}: Address already in use']


@pytest.mark.parametrize(
    ('host', 'expected'),
    [('127.0.0.1', True), ('127.0.0.2', True), ('localhost', True), ('::1', True), ('0.0.0.0', False), ('::', False)],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def _cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {**os.environ, 'COLUMNS': '80', 'XDG_DATA_HOME': str(tmp_path / 'data'), **(env or {})}
    return subprocess.run(
        [sys.executable, '-m', 'tracegraph', *args], capture_output=True, text=True, env=base, cwd=tmp_path, timeout=120
    )


@pytest.mark.parametrize(
    ('args', 'message'),
    [
        (['serve', '--port', '99999'], 'error: --port must be from 0 to 65535 (0 picks a free port), got 99999'),
        (
            ['serve', '--port', '0', '--db', 'not-duckdb.txt'],
            'error: not-duckdb.txt is not a DuckDB database: pass another --db (a new file is created)',
        ),
        (['serve', '--port', '0', '--db', '.'], 'error: . is a directory: pass a file for --db'),
        (
            ['report', '--db', 'not-duckdb.txt'],
            'error: not-duckdb.txt is not a DuckDB database: pass another --db (a new file is created)',
        ),
    ],
)
def test_bad_options_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / 'not-duckdb.txt').write_text('these are not the bytes of a database\n')
    result = _cli(tmp_path, *args)
    assert (result.returncode, result.stderr, result.stdout) == (2, message + '\n', '')


def test_a_store_held_by_a_running_server_is_named(tmp_path: Path) -> None:
    with serve_process(tmp_path / 'data', '--db', str(tmp_path / 'held.duckdb')) as served:
        result = _cli(tmp_path, 'serve', '--port', '0', '--no-grpc', '--db', 'held.duckdb')
        assert (tmp_path / 'held.duckdb.serving.json').exists()
    assert result.returncode == 2
    assert result.stderr == (
        f'error: the store held.duckdb is open in `tracegraph serve` at {served.url} (process {served.proc.pid}): '
        'read it through its JSON API (`tracegraph report` does), stop it, or pass another --db\n'
    )
    assert not (tmp_path / 'held.duckdb.serving.json').exists()  # removed when serve stopped
    again = _cli(tmp_path, 'report', '--db', 'held.duckdb')  # nobody holds it now: read directly
    assert again.returncode == 0 and 'reading it through' not in again.stderr


def test_report_and_demo_go_through_the_server_that_holds_the_store(tmp_path: Path) -> None:
    db = tmp_path / 'held.duckdb'
    with serve_process(tmp_path / 'data', '--db', str(db)) as served:
        with exporting_provider(served.url) as (provider, _):
            emit_run(provider, graph='held-graph', fail=True)
        report = _cli(tmp_path, 'report', '--db', str(db), '--format', 'json')
        assert report.returncode == 0, report.stderr
        assert report.stderr.strip() == f'the store {db} is open in `tracegraph serve`: reading it through {served.url}'
        figures = json.loads(report.stdout)
        (graph,) = figures['graphs']
        assert (graph['graph'], graph['runs'], graph['failed_runs']) == ('held-graph', 1, 1)
        assert [n['node_id'] for n in graph['nodes']] == ['Fetch', 'Think', 'Answer']
        demo = _cli(tmp_path, 'demo', '--once', '--db', str(db), env={'COLUMNS': '200'})
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert f'the store {db} is open in `tracegraph serve`: sending the runs to it at {served.url}' in ' '.join(
            demo.stdout.split()
        )
        with httpx.Client(base_url=served.url) as c:
            graphs = {g['name'] for g in c.get('/api/graphs').json()}
        assert {'held-graph', 'thermostat', 'weather_agent'} <= graphs


def test_demo_endpoint_without_a_scheme(tmp_path: Path) -> None:
    result = _cli(tmp_path, 'demo', '--once', '--endpoint', 'localhost:4318')
    assert result.returncode == 2
    assert ' '.join(result.stdout.split()) == (
        "error: Invalid OTLP endpoint 'localhost:4318' in --endpoint: expected an http:// or https:// URL such as "
        "'http://localhost:4318'. (did you mean http://localhost:4318?)"
    )


def test_demo_against_a_dead_endpoint_says_nothing_was_delivered(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    result = _cli(
        tmp_path, 'demo', '--once', '--endpoint', f'http://127.0.0.1:{port}', env={'OTEL_EXPORTER_OTLP_TIMEOUT': '1'}
    )
    assert result.returncode == 1, result.stdout
    text = ' '.join(result.stdout.split())
    assert re.search(
        r'0 of (\d+) spans delivered to http://127\.0\.0\.1:\d+; \1 were not \(\1 export_failed\)', text
    ), text


def test_version_and_python_dash_m(tmp_path: Path) -> None:
    from tracegraph._version import __version__

    assert _cli(tmp_path, '--version').stdout == f'tracegraph {__version__}\n'
    assert 'serve' in _cli(tmp_path, '--help').stdout


def test_dashboards_export_writes_the_production_files(tmp_path: Path) -> None:
    source = Path(__file__).resolve().parent.parent / 'dashboards'
    expected = sorted(
        str(p.relative_to(source)) for p in source.rglob('*') if p.is_file() and '__pycache__' not in p.parts
    )
    result = _cli(tmp_path, 'dashboards', 'export', 'out')
    assert result.returncode == 0, result.stderr
    written = sorted(str(p.relative_to(tmp_path / 'out')) for p in (tmp_path / 'out').rglob('*') if p.is_file())
    assert written == expected
    assert (tmp_path / 'out' / 'README.md').read_bytes() == (source / 'README.md').read_bytes()
    again = _cli(tmp_path, 'dashboards', 'export', 'out')
    assert again.returncode == 2 and 'already holds' in again.stderr and 'pass --force' in again.stderr
    assert _cli(tmp_path, 'dashboards', 'export', 'out', '--force').returncode == 0
