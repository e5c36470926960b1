"""The pydantic_graph 1.x documentation examples of the persistence API, run as the docs give them (tests/upstream_docs,
imports changed only), printing what the documentation prints."""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

DOCS = Path(__file__).parent / 'upstream_docs'
ROOT = Path(__file__).parent.parent


def documented_output(module: ModuleType) -> str:
    """The `#>` lines of the example's source, in order: what the documentation says it prints."""
    source = Path(module.__file__ or '').read_text()
    return ''.join(line.strip()[3:] + '\n' for line in source.splitlines() if line.strip().startswith('#>'))


@pytest.fixture
def docs_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(DOCS))  # pyright: ignore[reportUnknownMemberType]  # pytest types it partly
    monkeypatch.chdir(tmp_path)  # the file examples write into the working directory
    yield tmp_path
    for name in list(sys.modules):
        if (getattr(sys.modules[name], '__file__', None) or '').startswith(str(DOCS)):
            del sys.modules[name]


def run_main(name: str) -> tuple[ModuleType, str]:
    module = importlib.import_module(name)
    return module, module.main


def test_count_down_iter_yields_the_start_node_on_v1(docs_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    count_down = importlib.import_module('count_down')
    asyncio.run(count_down.main())  # `tracegraph.v1`: the 0.0.54+ iteration, unchanged code
    assert capsys.readouterr().out == documented_output(count_down)

    count_down.count_down_graph.yield_start_node = False  # the classic iteration (0.0.36-0.0.53, `tracegraph`)
    asyncio.run(count_down.main())
    assert capsys.readouterr().out == 'Node: CountDown()\n' * 3 + 'Node: End(data=0)\nFinal output: 0\n'


@pytest.mark.parametrize('name', ['count_down_next', 'count_down_from_persistence', 'genai_email_feedback'])
def test_example_prints_what_the_docs_print(name: str, docs_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(name)
    asyncio.run(module.main())
    assert capsys.readouterr().out == documented_output(module)


def test_count_down_from_persistence_leaves_a_finished_run_in_the_file(docs_path: Path) -> None:
    module = importlib.import_module('count_down_from_persistence')
    asyncio.run(module.main())
    import json

    snapshots = json.loads((docs_path / 'count_down_run_abc123.json').read_text())
    assert [s['kind'] for s in snapshots] == ['node'] * 6 + ['end']
    assert [s['status'] for s in snapshots if s['kind'] == 'node'] == ['success'] * 6
    assert [s['state']['counter'] for s in snapshots] == [5, 4, 3, 2, 1, 0, 0]
    assert snapshots[-1]['result'] == {'data': 0}


def test_vending_machine(docs_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.prompt import Prompt

    answers = iter(['1', 'crisps', '1'])

    def ask(cls: type[Prompt], prompt: str, **kwargs: Any) -> str:
        return next(answers)

    monkeypatch.setattr(Prompt, 'ask', classmethod(ask))
    module = importlib.import_module('vending_machine')
    asyncio.run(module.main())
    assert capsys.readouterr().out == documented_output(module)


def _q_and_a(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith('OTEL_')}
    env['PYTHONPATH'] = os.pathsep.join([str(DOCS), str(ROOT)])
    code = 'import asyncio, ai_q_and_a_run; asyncio.run(ai_q_and_a_run.main())'
    return subprocess.run(
        [sys.executable, '-W', 'error', '-c', code, *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=env
    )


def test_human_in_the_loop_question_graph_across_processes(tmp_path: Path) -> None:
    """The docs' HITL flow: one process per turn, interrupted for the user's answer and resumed from the file."""
    first = _q_and_a(tmp_path)
    assert (first.returncode, first.stderr) == (0, '')
    assert first.stdout == 'What is the capital of France?\n'

    wrong = _q_and_a(tmp_path, 'Lyon')
    assert (wrong.returncode, wrong.stderr) == (0, '')
    assert wrong.stdout == 'Comment: Wrong: try again.\nWhat is the capital of France?\n'

    right = _q_and_a(tmp_path, 'Paris')
    assert (right.returncode, right.stderr) == (0, '')
    lines = right.stdout.splitlines()
    assert lines[0] == 'END: Well done, Paris is right.'
    nodes = re.findall(r'(Ask|Answer|Evaluate|Reprimand|End)\(', lines[1])
    assert nodes == ['Ask', 'Answer', 'Evaluate', 'Reprimand', 'Ask', 'Answer', 'Evaluate', 'End']
