"""Durable runs with real processes: a persisted run SIGKILLed at random moments (while a node runs, between
snapshots, mid-write) and resumed in new processes reaches the result of an uninterrupted run; nodes recorded as
successful ran exactly once, the interrupted ones at least once; of two resumers at once exactly one proceeds."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import crash_worker
import pytest
from crash_worker import HANG_AT, STEPS
from postgres_helpers import PostgresServer
from tracing_helpers import Pipeline

from tracegraph import Graph
from tracegraph.exceptions import GraphNodeStatusError
from tracegraph.persistence import NodeSnapshot
from tracegraph.tracing import attributes as attr

WORKER = Path(__file__).with_name('crash_worker.py')
ROOT = Path(__file__).resolve().parent.parent
EXPECTED = sum(range(STEPS))

pytestmark = pytest.mark.slow


def _start(kind: str, store: str, effects: Path, mode: str, gate: Path | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, 'PYTHONPATH': f'{ROOT}{os.pathsep}{WORKER.parent}'}
    if gate is not None:
        env['CRASH_WORKER_GATE'] = str(gate)
    env = {k: v for k, v in env.items() if not k.startswith('OTEL_')}
    return subprocess.Popen(
        [sys.executable, str(WORKER), kind, store, str(effects), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _lines(effects: Path) -> int:
    return effects.read_text().count('\n') if effects.exists() else 0


def _kill_after(proc: subprocess.Popen[str], effects: Path, target: int) -> bool:
    """SIGKILL `proc` once EFFECTS has `target` lines (plus a random few hundred µs); False when it ended first."""
    deadline = time.monotonic() + 60
    while _lines(effects) < target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.0005)  # polling the condition, not waiting for a guess
    time.sleep(random.uniform(0, 0.003))
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)  # reaps it and closes its pipes
    return True


KINDS = ['file', 'sqlite', 'postgres']


def _store(kind: str, request: pytest.FixtureRequest, tmp_path: Path, name: str) -> str:
    """Where the worker keeps run `name`: a file, a SQLite database, or a run of the test session's PostgreSQL."""
    if kind == 'postgres':
        server: PostgresServer = request.getfixturevalue('postgres')
        return f'{server.dsn}#{request.node.name}-{name}'
    return str(tmp_path / f'{name}.{"json" if kind == "file" else "sqlite3"}')


@pytest.mark.parametrize('kind', KINDS)
def test_runs_killed_at_random_moments_resume_to_the_same_result(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    random.seed(f'{kind}-crash')
    for attempt in range(6):
        store = _store(kind, request, tmp_path, f'{attempt}-run')
        effects = tmp_path / f'{attempt}-effects.txt'
        kills = 0
        proc = _start(kind, store, effects, 'start')
        while True:
            target = _lines(effects) + random.randint(0, 8)
            if target < STEPS and _kill_after(proc, effects, target):
                kills += 1
                proc = _start(kind, store, effects, 'resume')
                continue
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            break
        assert json.loads(out) == {'output': EXPECTED, 'total': EXPECTED}
        counts = Counter(int(line) for line in effects.read_text().split())
        assert sorted(counts) == list(range(STEPS))  # every node ran
        assert sum(counts.values()) - STEPS <= kills  # only an interrupted node ran again, once per kill at most
        assert not list(tmp_path.glob('*.tmp'))  # no writer's leftovers


@pytest.mark.parametrize('kind', KINDS)
def test_two_resumers_at_once_exactly_one_proceeds(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    store = _store(kind, request, tmp_path, 'run')
    effects = tmp_path / 'effects.txt'
    proc = _start(kind, store, effects, 'start')
    assert _kill_after(proc, effects, 5)
    # The winner waits near the end until the loser has given up, so it cannot finish before the loser even tries.
    gate = tmp_path / 'gate'
    resumers = [_start(kind, store, effects, 'resume', gate=gate) for _ in range(2)]
    deadline = time.monotonic() + 60
    while all(r.poll() is None for r in resumers) and time.monotonic() < deadline:
        time.sleep(0.005)
    loser = next(r for r in resumers if r.poll() is not None)
    winner = next(r for r in resumers if r is not loser)
    _, loser_err = loser.communicate(timeout=30)
    assert loser.returncode != 0 and winner.poll() is None  # refused while the winner is alive mid-run
    assert 'GraphNodeStatusError' in loser_err or 'Unable to restore snapshot' in loser_err, loser_err
    gate.touch()
    out, err = winner.communicate(timeout=60)
    assert winner.returncode == 0, err
    assert json.loads(out)['output'] == EXPECTED


@pytest.mark.anyio
@pytest.mark.parametrize('kind', KINDS)
async def test_a_node_running_when_its_process_dies_runs_again_as_attempt_2(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, otel: Pipeline
) -> None:
    store = _store(kind, request, tmp_path, 'run')
    effects = tmp_path / 'effects.txt'
    proc = _start(kind, store, effects, 'hang')
    deadline = time.monotonic() + 60
    while _lines(effects) <= HANG_AT and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    assert proc.poll() is None, proc.communicate()
    graph = Graph(nodes=[crash_worker.Work], name='crash_worker', instrumentation=otel.settings())
    # Alive in the other process: never taken over.
    with pytest.raises(GraphNodeStatusError):
        async with graph.iter_from_persistence(crash_worker.persistence(kind, store), deps=effects):
            raise AssertionError('not reached')
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)

    persistence = crash_worker.persistence(kind, store)
    async with graph.iter_from_persistence(persistence, deps=effects) as run:
        async for _ in run:
            pass
    assert run.result is not None and run.result.output == EXPECTED
    counts = Counter(int(line) for line in effects.read_text().split())
    assert [i for i, n in counts.items() if n != 1] == [HANG_AT]  # it alone ran twice
    attempts = {s.attributes[attr.NODE_ATTEMPT] for s in otel.spans if s.name == 'run node Work'}
    first = next(s for s in otel.spans if s.name == 'run node Work')
    assert first.attributes[attr.NODE_ATTEMPT] == 2 and attempts == {1, 2}
    stored = [s for s in await persistence.load_all() if isinstance(s, NodeSnapshot)]
    retried = [s.node for s in stored if s.attempt is not None]
    assert retried == [crash_worker.Work(HANG_AT)] and [s.attempt for s in stored if s.attempt] == [2]
    assert all(s.status == 'success' for s in stored)
