"""The shipped dashboards' PromQL against a real Prometheus scraping real tracegraph processes.

Two workload processes (two services) run graphs with `configure(metrics=MetricsOptions(prometheus_port=...))`; Debian's Prometheus scrapes
them every second; then every PromQL expression of both dashboards, with its template variables resolved the way
Grafana resolves them (All, and a single picked value), must return at least one real number.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from grafana_helpers import (
    DASHBOARD_FILES,
    DASHBOARDS_DIR,
    PromTarget,
    has_finite_sample,
    interpolate,
    load_dashboard,
    promql_targets,
    resolve_variables,
    variable_values,
    variables,
)
from ports import free_port

pytestmark = pytest.mark.prometheus

Chosen = dict[str, Sequence[str] | Literal['All']]

SERVICES = ('tracegraph-ci-billing', 'tracegraph-ci-ingest')
WORKLOAD = DASHBOARDS_DIR / 'workload.py'
READY_TIMEOUT = 20.0
DATA_TIMEOUT = 40.0


def _ensure_binary(name: str) -> str:
    """Path of a binary of Debian's prometheus package, installing the package when it is missing."""
    found = shutil.which(name)
    if found is None and shutil.which('apt-get') and os.geteuid() == 0:
        env = {**os.environ, 'DEBIAN_FRONTEND': 'noninteractive'}
        subprocess.run(['apt-get', 'update', '-qq'], env=env, capture_output=True, timeout=300, check=False)
        subprocess.run(
            ['apt-get', 'install', '-y', '-qq', '--no-install-recommends', 'prometheus'],
            env=env,
            capture_output=True,
            timeout=600,
            check=False,
        )
        found = shutil.which(name)
    if found is None:
        reason = f'{name} is missing and Debian package prometheus could not be installed'
        if os.environ.get('CI'):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass(frozen=True, kw_only=True)
class Prometheus:
    """A running Prometheus: its query API and the services it scrapes."""

    url: str
    services: tuple[str, ...]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Evaluate an instant query now; Prometheus errors (bad PromQL) raise with its message."""
        response = httpx.get(f'{self.url}/api/v1/query', params={'query': expr}, timeout=10)
        body = response.json()
        assert body['status'] == 'success', f'{expr!r}: {body.get("errorType")}: {body.get("error")}'
        assert body['data']['resultType'] == 'vector', expr
        return body['data']['result']

    def series_values(self, selector: str | None, label: str) -> list[str]:
        """Answer Grafana's `label_values(selector, label)` from the series API."""
        params: dict[str, str] = {'match[]': selector} if selector else {}
        response = httpx.get(f'{self.url}/api/v1/label/{label}/values', params=params, timeout=10)
        body = response.json()
        assert body['status'] == 'success', f'label_values({selector}, {label}): {body.get("error")}'
        return list(body['data'])

    def label_names(self, selector: str) -> set[str]:
        """Every label name (but `__name__`) on the series a selector matches."""
        response = httpx.get(f'{self.url}/api/v1/labels', params={'match[]': selector}, timeout=10)
        return {n for n in response.json()['data'] if n != '__name__'}


def _workload_command(service: str, port: int, seed: int, workdir: Path) -> list[str]:
    return [
        sys.executable,
        str(WORKLOAD),
        f'--service={service}',
        f'--prometheus-port={port}',
        f'--spans-file={workdir / f"{service}.jsonl"}',  # spans to a file, so nothing tries to reach an OTLP port
        f'--seed={seed}',
        '--seconds=90',  # stops by itself even if this test is killed
    ]


def _spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open('wb') as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f'{url}/-/ready', timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope='module')
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = _ensure_binary('prometheus')
    workdir = tmp_path_factory.mktemp('prometheus')
    processes: list[subprocess.Popen[bytes]] = []
    try:
        jobs: list[str] = []
        for seed, service in enumerate(SERVICES, start=1):
            port = free_port()
            processes.append(_spawn(_workload_command(service, port, seed, workdir), workdir / f'{service}.log'))
            # The job name is the service name: that is how the dashboards' `service` variable (the `job` label)
            # identifies a service when Prometheus scrapes the app directly.
            jobs.append(
                f'  - job_name: {service}\n    scrape_interval: 1s\n    static_configs:\n'
                f"      - targets: ['127.0.0.1:{port}']\n"
            )
        config = workdir / 'prometheus.yml'
        config.write_text(
            'global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n' + ''.join(jobs)
        )
        port = free_port()
        command = [
            binary,
            f'--config.file={config}',
            f'--storage.tsdb.path={workdir / "data"}',
            f'--web.listen-address=127.0.0.1:{port}',
            '--log.level=warn',
        ]
        server = _spawn(command, workdir / 'prometheus.log')
        processes.append(server)
        prom = Prometheus(url=f'http://127.0.0.1:{port}', services=SERVICES)
        deadline = time.monotonic() + READY_TIMEOUT
        up: list[dict[str, Any]] = []
        while True:
            if server.poll() is not None:
                pytest.fail(f'prometheus exited {server.returncode}: {(workdir / "prometheus.log").read_text()}')
            if _ready(prom.url):
                up = prom.query('sum by (job) (up) == 1')
                if {s['metric']['job'] for s in up} == set(SERVICES) and _has_every_outcome(prom):
                    break
            if time.monotonic() > deadline:
                logs = {p.name: p.read_text()[-2000:] for p in workdir.glob('*.log')}
                pytest.fail(f'no runs of every outcome scraped after {READY_TIMEOUT}s: {up}; logs: {logs}')
            time.sleep(0.25)
        yield prom
    finally:
        for process in reversed(processes):
            _stop(process)


def _has_every_outcome(prom: Prometheus) -> bool:
    """Whether every service's completed, failed and interrupted runs have been scraped (the workloads make all three)."""
    seen = prom.query('group by (job, tracegraph_run_outcome) (tracegraph_run_duration_seconds_count)')
    return len(seen) == 3 * len(SERVICES)


def _all_targets() -> list[PromTarget]:
    return [t for name in DASHBOARD_FILES for t in promql_targets(load_dashboard(name), name)]


def _evaluate(prom: Prometheus, pick: Literal['all', 'first']) -> dict[str, tuple[str, int]]:
    """Evaluate every dashboard expression once; maps `dashboard #panel title ref` to (expression, finite series)."""
    results: dict[str, tuple[str, int]] = {}
    for name in DASHBOARD_FILES:
        dashboard = load_dashboard(name)
        vars_ = {v.name: v for v in variables(dashboard)}
        chosen = resolve_variables(dashboard, prom.series_values, pick)
        for target in promql_targets(dashboard, name):
            key = f'{name} #{target.panel_id} {target.panel_title!r} {target.ref_id}'
            copies: dict[str, Chosen] = {key: chosen}
            if target.repeat is not None:
                # Grafana repeats this panel once per selected value of the variable: each copy sees one value.
                selected = chosen[target.repeat]
                values = (
                    variable_values(dashboard, target.repeat, prom.series_values, chosen)
                    if selected == 'All'
                    else selected
                )
                copies = {f'{key} [${target.repeat}={v}]': {**chosen, target.repeat: [v]} for v in values}
            for copy_key, copy_chosen in copies.items():
                expr = interpolate(target.expr, vars_, copy_chosen)
                result = prom.query(expr)
                results[copy_key] = (expr, sum(1 for s in result if has_finite_sample([s])))
    return results


def _wait_for_data(prom: Prometheus, pick: Literal['all', 'first']) -> dict[str, tuple[str, int]]:
    deadline = time.monotonic() + DATA_TIMEOUT
    while True:
        results = _evaluate(prom, pick)
        if all(n > 0 for _, n in results.values()) or time.monotonic() > deadline:
            return results
        time.sleep(1)


def test_every_dashboard_expression_has_data_with_all_selected(prometheus: Prometheus):
    results = _wait_for_data(prometheus, 'all')
    assert len(results) > len(_all_targets()), 'the repeated heatmap is evaluated once per node'
    empty = {key: expr for key, (expr, n) in results.items() if n == 0}
    assert empty == {}


def test_every_dashboard_expression_has_data_with_one_value_picked(prometheus: Prometheus):
    results = _wait_for_data(prometheus, 'first')
    empty = {key: expr for key, (expr, n) in results.items() if n == 0}
    assert empty == {}


def test_service_variable_lists_every_service(prometheus: Prometheus):
    for name in DASHBOARD_FILES:
        chosen = resolve_variables(load_dashboard(name), prometheus.series_values, 'all')
        assert chosen['service'] == 'All'
    assert sorted(prometheus.series_values('tracegraph_run_duration_seconds_count', 'job')) == sorted(SERVICES)


def test_exposed_names_and_labels_are_the_ones_the_dashboards_use(prometheus: Prometheus):
    """The OpenTelemetry Prometheus exporter's naming, checked on what Prometheus actually stored."""
    target = {'job', 'instance'}

    def labels(selector: str) -> set[str]:
        # Empty labels are not stored, so the scope's version and schema URL come and go with the meter's.
        found = prometheus.label_names(selector)
        assert 'otel_scope_name' in found, found
        return {n for n in found if not n.startswith('otel_scope_')}

    assert labels('tracegraph_node_duration_seconds_bucket') == {
        'le',
        'tracegraph_graph_name',
        'tracegraph_node_id',
        'tracegraph_node_outcome',
        *target,
    }
    assert labels('tracegraph_run_duration_seconds_count') == {
        'tracegraph_graph_name',
        'tracegraph_run_outcome',
        *target,
    }
    assert labels('tracegraph_run_steps_total') == {'tracegraph_graph_name', *target}
    # service.name reaches Prometheus only through target_info; with one scrape job per service, job names it too.
    info = prometheus.query('target_info')
    assert sorted((s['metric']['job'], s['metric']['service_name']) for s in info) == [(s, s) for s in SERVICES]
    outcomes = {
        s['metric']['tracegraph_run_outcome'] for s in prometheus.query('tracegraph_run_duration_seconds_count')
    }
    assert outcomes == {'completed', 'failed', 'interrupted'}


def test_promtool_accepts_the_shipped_prometheus_config():
    promtool = _ensure_binary('promtool')
    config = DASHBOARDS_DIR / 'prometheus' / 'prometheus.yml'
    done = subprocess.run(
        [promtool, 'check', 'config', '--syntax-only', str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f'Checking {config}' in done.stdout
    assert 'SUCCESS' in done.stdout
