"""The suite's own fixtures keep tests independent: a loop `run_sync` leaves open, in a test or in a module's
fixture, is closed before its garbage collection can fail a later test under `filterwarnings = error`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ('pytester',)

TESTS = Path(__file__).resolve().parent

LEAVES_A_LOOP = """
from dataclasses import dataclass

import pytest

from tracegraph import BaseNode, End, Graph, GraphRunContext


@dataclass
class A(BaseNode[None, None, int]):
    async def run(self, ctx: GraphRunContext) -> End[int]:
        return End(1)


@pytest.fixture(scope='module')
def made() -> int:
    return Graph(nodes=[A]).run_sync(A()).output  # leaves the thread's loop open, as the classic engine does


def test_in_a_test() -> None:
    assert Graph(nodes=[A]).run_sync(A()).output == 1


def test_in_a_module_fixture(made: int) -> None:
    assert made == 1
"""

COLLECTS_GARBAGE = """
import asyncio
import warnings


def test_after() -> None:
    policy = asyncio.get_event_loop_policy()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        left = getattr(getattr(policy, '_local', None), '_loop', None)  # the current loop, read without making one
    # Left open, it would be collected whenever a later test replaces it, and fail that test (a ResourceWarning).
    assert left is None or left.is_closed(), left
"""


def test_loops_left_open_by_run_sync_never_fail_a_later_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest((TESTS / 'conftest.py').read_text())
    monkeypatch.setenv('PYTHONPATH', f'{TESTS}{os.pathsep}{TESTS.parent}')  # the helpers the conftest imports
    pytester.makeini('[pytest]\nfilterwarnings = error\n')  # as the suite's pyproject.toml
    pytester.makepyfile(test_a_leaves=LEAVES_A_LOOP, test_b_collects=COLLECTS_GARBAGE)
    result = pytester.runpytest_subprocess('-p', 'no:cacheprovider')
    result.assert_outcomes(passed=3)
