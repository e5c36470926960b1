"""The built wheel installed in fresh virtual environments: core only, with `[otlp]`, with `[dashboard]`.

In each, a graph runs with warnings turned into errors, `python -m tracegraph --version` answers, and what the
install lacks is named in one line with the extra to add, instead of a traceback. The venvs live under
`test-output/` and are made once per wheel (CI starts from none).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tracegraph

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / 'test-output'
GRAPH = (
    'from dataclasses import dataclass\n'
    'from tracegraph import BaseNode, End, Graph, GraphRunContext\n'
    '@dataclass\n'
    'class Start(BaseNode[None, None, int]):\n'
    '    async def run(self, ctx: GraphRunContext) -> End[int]:\n'
    '        return End(42)\n'
    'print(Graph(nodes=(Start,)).run_sync(Start()).output)\n'
)

Env = tuple[Path, dict[str, str]]


@pytest.fixture(scope='module')
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout."""
    out = tmp_path_factory.mktemp('wheel')
    subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', str(ROOT), '--no-deps', '--quiet', '--disable-pip-version-check',
         '-w', str(out)],
        check=True, timeout=600, capture_output=True,
    )  # fmt: skip
    (built,) = out.glob('tracegraph-*.whl')
    return built


def _digest(wheel: Path) -> str:
    """What the venv was installed from: the whole wheel's hash (its first bytes are a zip header, the same for all)."""
    return hashlib.sha256(wheel.read_bytes()).hexdigest()


def _venv(wheel: Path, extra: str) -> Env:
    name = f'venv-{extra or "core"}'
    venv = OUTPUT / name
    python = venv / 'bin' / 'python'
    stamp = venv / 'installed-wheel'
    if not python.exists() or not stamp.exists() or stamp.read_text() != _digest(wheel):
        subprocess.run([sys.executable, '-m', 'venv', '--clear', str(venv)], check=True, timeout=300)
        target = f'{wheel}[{extra}]' if extra else str(wheel)
        subprocess.run(
            [str(python), '-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '--force-reinstall',
             target],
            check=True, timeout=900, capture_output=True,
        )  # fmt: skip
        stamp.write_text(_digest(wheel))
    env = {k: v for k, v in os.environ.items() if not k.startswith(('OTEL_', 'PYTHON', 'TRACEGRAPH_'))}
    return python, env


def _run(env: Env, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    python, variables = env
    return subprocess.run(
        [str(python), '-W', 'error', *args], capture_output=True, text=True, env=variables, timeout=120, cwd=cwd
    )


@pytest.fixture(scope='module')
def core(wheel: Path) -> Env:
    return _venv(wheel, '')


@pytest.fixture(scope='module')
def otlp(wheel: Path) -> Env:
    return _venv(wheel, 'otlp')


@pytest.fixture(scope='module')
def dashboard(wheel: Path) -> Env:
    return _venv(wheel, 'dashboard')


@pytest.mark.parametrize('extra', ['core', 'otlp', 'dashboard'])
def test_every_install_runs_a_graph_without_a_warning_and_knows_its_version(
    extra: str, request: pytest.FixtureRequest
) -> None:
    env: Env = request.getfixturevalue(extra)
    ran = _run(env, '-c', GRAPH)
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, '42\n', '')
    version = _run(env, '-m', 'tracegraph', '--version')
    assert (version.returncode, version.stdout, version.stderr) == (0, f'tracegraph {tracegraph.__version__}\n', '')


def test_core_the_command_line_names_the_extra(core: Env) -> None:
    result = _run(core, '-m', 'tracegraph', 'serve')
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        '',
        "tracegraph: the command line needs the 'dashboard' extra (typer, rich not installed): "
        "pip install 'tracegraph[dashboard]'\n",
    )


def test_core_configure_names_the_extra(core: Env) -> None:
    result = _run(core, '-c', 'from tracegraph.exporters import configure')
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ModuleNotFoundError: tracegraph.exporters.configure needs the 'otlp' extra "
        "(opentelemetry.sdk is not installed): pip install 'tracegraph[otlp]'"
    )


def test_otlp_exports_and_the_command_line_names_the_dashboard_extra(otlp: Env, tmp_path: Path) -> None:
    code = (
        GRAPH.replace('print(', 'result = (') + 'from tracegraph.exporters import configure, read_spans\n'
        "with configure(file='spans.jsonl', metrics=False):\n"
        '    Graph(nodes=(Start,), name="g").run_sync(Start())\n'
        "print(sorted(s.name for s in read_spans('spans.jsonl')))\n"
    )
    ran = _run(otlp, '-c', code, cwd=tmp_path)
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "['run graph g', 'run node Start']\n", '')
    cli = _run(otlp, '-m', 'tracegraph', 'report')
    assert (cli.returncode, cli.stderr) == (
        2,
        "tracegraph: the command line needs the 'dashboard' extra (typer not installed): "
        "pip install 'tracegraph[dashboard]'\n",
    )


_EXTRA_ERRORS = """
import importlib.util
from tracegraph.exporters import ConfigurationError, MetricsOptions, SpoolOptions, configure
from tracegraph.exporters.settings import resolve_target
from tracegraph.exporters.spool.exporter import SpoolSpanExporter
print(sorted(m for m in ('grpc', 'prometheus_client') if importlib.util.find_spec(m)))
for attempt in (
    lambda: configure(protocol='grpc', endpoint='http://127.0.0.1:9', metrics=False, set_global=False),
    lambda: configure(protocol='grpc', spool=SpoolOptions(directory='spool'), metrics=False, set_global=False),
    lambda: configure(file='f.jsonl', metrics=MetricsOptions(prometheus_port=0), set_global=False),
    lambda: SpoolSpanExporter('spool', target=resolve_target(endpoint='http://127.0.0.1:9', protocol='grpc',
                                                             headers=None, signal='traces')),
):
    try:
        attempt()
    except ConfigurationError as e:
        print(e)
"""


def test_otlp_is_http_only_and_names_the_grpc_and_prometheus_extras(otlp: Env, tmp_path: Path) -> None:
    ran = _run(otlp, '-c', _EXTRA_ERRORS, cwd=tmp_path)
    grpc = "OTLP over gRPC (protocol 'grpc') needs the 'grpc' extra (grpc is not installed): pip install 'tracegraph[grpc]'"
    assert (ran.returncode, ran.stderr) == (0, '')
    assert ran.stdout.splitlines() == [
        '[]',
        grpc,
        grpc,
        "MetricsOptions.prometheus_port needs the 'prometheus' extra (prometheus_client is not installed): "
        "pip install 'tracegraph[prometheus]'",
        grpc,
    ]


_GRPC_EXPORT = """
from concurrent import futures
import grpc
received = []
def export(request, context):
    received.append(request)
    return b''
handler = grpc.method_handlers_generic_handler(
    'opentelemetry.proto.collector.trace.v1.TraceService', {'Export': grpc.unary_unary_rpc_method_handler(export)}
)
server = grpc.server(futures.ThreadPoolExecutor(2), handlers=(handler,))
port = server.add_insecure_port('127.0.0.1:0')
server.start()
from tracegraph.exporters import configure
telemetry = configure(protocol='grpc', endpoint=f'http://127.0.0.1:{port}', metrics=False)
Graph(nodes=(Start,), name='g').run_sync(Start())
telemetry.shutdown()
print(len(received), b'run node Start' in b''.join(received))
"""


def test_dashboard_brings_grpc_and_configure_exports_over_it(dashboard: Env, tmp_path: Path) -> None:
    ran = _run(dashboard, '-c', GRAPH.replace('print(', 'result = (') + _GRPC_EXPORT, cwd=tmp_path)
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, '1 True\n', '')


def test_dashboard_has_the_whole_command_line_and_the_grafana_files(dashboard: Env, tmp_path: Path) -> None:
    helped = _run(dashboard, '-m', 'tracegraph', 'serve', '--help')
    assert helped.returncode == 0 and '--grpc-port' in helped.stdout, helped.stderr
    exported = _run(dashboard, '-m', 'tracegraph', 'dashboards', 'export', str(tmp_path / 'dash'))
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / 'dash' / 'grafana' / 'tracegraph-overview.json').is_file()
    assert (tmp_path / 'dash' / 'collector' / 'otelcol.yaml').is_file()


def _floors() -> dict[str, str]:
    """Each `"name>=version"` floor of the core (pyproject.toml's `dependencies`)."""
    text = (ROOT / 'pyproject.toml').read_text()
    text = text[text.index('\ndependencies = [') :]
    text = text[: text.index(']')]
    found = re.findall(r'"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?>=([^",;]+)"', text)
    return {name.lower(): version.strip() for name, version in found if name != 'tracegraph'}


def _lowest_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / '.ci' / 'constraints-lowest.txt').read_text().splitlines():
        name, sep, version = line.split('#')[0].partition('==')
        if sep:
            pins[name.strip().lower()] = version.strip()
    return pins


def test_the_lowest_versions_run_pins_every_core_floor() -> None:
    """CI's second run installs .ci/constraints-lowest.txt: each floor of the core must be pinned there at its value,
    so a floor that does not work can never be declared (the extras' floors are the newest run's versions)."""
    floors, pins = _floors(), _lowest_pins()
    assert floors.keys() == {'pydantic', 'typing-extensions', 'opentelemetry-api'}
    assert floors.keys() <= pins.keys()
    disagreeing = {name: (floors[name], pins[name]) for name in pins.keys() & floors.keys()}
    disagreeing = {name: pair for name, pair in disagreeing.items() if not pair[1].startswith(pair[0])}
    assert disagreeing == {}


_HIDE = """
import sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {HIDDEN!r} or name.startswith('opentelemetry.sdk') and 'opentelemetry.sdk' in {HIDDEN!r}:
            raise ModuleNotFoundError('No module named ' + repr(name), name=name)
sys.meta_path.insert(0, Hide())
"""


@pytest.mark.parametrize(
    ('hidden', 'code', 'message'),
    [
        (
            ['duckdb'],
            'import tracegraph.dashboard',
            "tracegraph.dashboard needs the `dashboard` extra (duckdb is missing): pip install 'tracegraph[dashboard]'",
        ),
        (
            ['opentelemetry.sdk'],
            'import inspect\nfrom tracegraph.exporters.testing import pytest_plugin\n'
            'next(inspect.unwrap(pytest_plugin.tracegraph_capture)())',
            'the tracegraph_capture fixture needs the OpenTelemetry SDK',
        ),
    ],
    ids=['dashboard without its extra', 'capture fixture without the SDK'],
)
def test_a_missing_extra_is_named(hidden: list[str], code: str, message: str) -> None:
    proc = subprocess.run(
        [sys.executable, '-c', _HIDE.replace('{HIDDEN!r}', repr(set(hidden))) + code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
