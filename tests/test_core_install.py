"""A core-only install (pydantic and the OpenTelemetry API, no extras), in its own virtual environment: graphs run,
and the command line and `configure()` say in one line which extra to install instead of a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / 'test-output' / 'venv-core'
CORE = ['pydantic>=2.11', 'opentelemetry-api>=1.27', 'typing-extensions>=4.12']


@pytest.fixture(scope='module')
def core_python(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The venv's interpreter, and an environment whose path holds only the `tracegraph` package."""
    python = VENV / 'bin' / 'python'
    if not python.exists():
        subprocess.run([sys.executable, '-m', 'venv', str(VENV)], check=True, timeout=300)
        subprocess.run(
            [str(python), '-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', *CORE],
            check=True,
            timeout=600,
        )
    source = tmp_path_factory.mktemp('core-src')
    shutil.copytree(ROOT / 'tracegraph', source / 'tracegraph', ignore=shutil.ignore_patterns('__pycache__'))
    env = {k: v for k, v in os.environ.items() if not k.startswith(('OTEL_', 'PYTHON'))}
    env['PYTHONPATH'] = str(source)
    return python, env


def _run(core: tuple[Path, dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    python, env = core
    return subprocess.run([str(python), *args], capture_output=True, text=True, env=env, timeout=120)


def test_a_graph_runs_with_the_core_dependencies_only(core_python: tuple[Path, dict[str, str]]) -> None:
    code = (
        'from dataclasses import dataclass\n'
        'from tracegraph import BaseNode, End, Graph, GraphRunContext\n'
        '@dataclass\n'
        'class Start(BaseNode[None, None, int]):\n'
        '    async def run(self, ctx: GraphRunContext) -> End[int]:\n'
        '        return End(42)\n'
        'print(Graph(nodes=(Start,)).run_sync(Start()).output)\n'
    )
    result = _run(core_python, '-c', code)
    assert (result.returncode, result.stdout, result.stderr) == (0, '42\n', '')


def test_the_command_line_names_the_extra(core_python: tuple[Path, dict[str, str]]) -> None:
    result = _run(core_python, '-m', 'tracegraph', 'serve')
    assert result.returncode == 2
    assert result.stdout == ''
    assert result.stderr == (
        "tracegraph: the command line needs the 'dashboard' extra (typer, rich not installed): "
        "pip install 'tracegraph[dashboard]'\n"
    )


def test_configure_names_the_extra(core_python: tuple[Path, dict[str, str]]) -> None:
    result = _run(core_python, '-c', 'from tracegraph.exporters import configure')
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ModuleNotFoundError: tracegraph.exporters.configure needs the 'otlp' extra "
        "(opentelemetry.sdk is not installed): pip install 'tracegraph[otlp]'"
    )
