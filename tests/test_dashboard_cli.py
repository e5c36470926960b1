"""`tracegraph serve` as a user runs it: a real process on an ephemeral loopback port."""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve_helpers import emit_run, exporting_provider, serve_process
from typer.testing import CliRunner

from tracegraph.cli import app
from tracegraph.dashboard.server import is_loopback


@pytest.fixture
def served_with_retention(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    with serve_process(tmp_path / 'data', '--retention-days', '30', banner_lines=5) as served:
        yield served.proc, served.banner


def test_serve_prints_where_and_serves(
    served_with_retention: tuple[subprocess.Popen[str], list[str]], tmp_path: Path
) -> None:
    proc, banner = served_with_retention
    assert banner[0].startswith('tracegraph dashboard  http://127.0.0.1:'), banner
    url = banner[0].split()[-1]
    db = tmp_path / 'data' / 'tracegraph' / 'traces.duckdb'
    assert banner[1:5] == [
        f'  store      {db}',
        f'  ingest     OTEL_EXPORTER_OTLP_ENDPOINT={url}',
        '  auth       off: anyone who can reach the port can send spans and read them',
        '  retention  30 days',
    ]
    with exporting_provider(url) as (provider, _):
        run = emit_run(provider)
    with httpx.Client(base_url=url, timeout=10) as c:
        assert [r['run_id'] for r in c.get('/api/runs').json()] == [run.run_id]
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
            app, ['serve', '--host', '0.0.0.0', '--port', str(port), '--token', 't'], env={'COLUMNS': '250'}
        )
    assert local.output.splitlines() == [f'error: cannot listen on 127.0.0.1:{port}: Address already in use']
    assert tokened.output.splitlines() == [f'error: cannot listen on 0.0.0.0:{port}: Address already in use']


@pytest.mark.parametrize(
    ('host', 'expected'),
    [('127.0.0.1', True), ('127.0.0.2', True), ('localhost', True), ('::1', True), ('0.0.0.0', False), ('::', False)],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected
