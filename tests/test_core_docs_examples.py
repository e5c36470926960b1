"""The classic pydantic_graph documentation examples, run unchanged but for the import, print what the docs print."""

from __future__ import annotations

import re
import sys
import textwrap
import types
from copy import deepcopy
from pprint import pprint

import pytest
from inline_snapshot import snapshot
from never_42 import Increment, MyState, never_42_graph

import tracegraph
from tracegraph import End

pytestmark = pytest.mark.anyio


async def test_run_example(capsys: pytest.CaptureFixture[str]) -> None:
    state = MyState(1)
    graph_run_result = await never_42_graph.run(Increment(), state=state)
    print(state)
    print(len(graph_run_result.history))

    state = MyState(41)
    graph_run_result = await never_42_graph.run(Increment(), state=state)
    print(state)
    print(len(graph_run_result.history))
    assert capsys.readouterr().out == snapshot("""\
MyState(number=2)
3
MyState(number=43)
5
""")


async def test_iter_example(capsys: pytest.CaptureFixture[str]) -> None:
    state = MyState(1)
    async with never_42_graph.iter(Increment(), state=state) as graph_run:
        node_states = [(graph_run.next_node, deepcopy(graph_run.state))]
        async for node in graph_run:
            node_states.append((node, deepcopy(graph_run.state)))
        pprint(node_states)

    state = MyState(41)
    async with never_42_graph.iter(Increment(), state=state) as graph_run:
        node_states = [(graph_run.next_node, deepcopy(graph_run.state))]
        async for node in graph_run:
            node_states.append((node, deepcopy(graph_run.state)))
        pprint(node_states)
    assert capsys.readouterr().out == snapshot("""\
[(Increment(), MyState(number=1)),
 (Check42(), MyState(number=2)),
 (End(data=2), MyState(number=2))]
[(Increment(), MyState(number=41)),
 (Check42(), MyState(number=42)),
 (Increment(), MyState(number=42)),
 (Check42(), MyState(number=43)),
 (End(data=43), MyState(number=43))]
""")


async def test_next_example(capsys: pytest.CaptureFixture[str]) -> None:
    state = MyState(48)
    async with never_42_graph.iter(Increment(), state=state) as graph_run:
        next_node = graph_run.next_node
        node_states = [(next_node, deepcopy(graph_run.state))]
        while not isinstance(next_node, End):
            if graph_run.state.number == 50:
                graph_run.state.number = 42
            next_node = await graph_run.next(next_node)
            node_states.append((next_node, deepcopy(graph_run.state)))
        pprint(node_states)
    assert capsys.readouterr().out == snapshot("""\
[(Increment(), MyState(number=48)),
 (Check42(), MyState(number=49)),
 (End(data=49), MyState(number=49))]
""")


def test_mermaid_example() -> None:
    assert never_42_graph.mermaid_code(start_node=Increment) == snapshot("""\
---
title: never_42_graph
---
stateDiagram-v2
  [*] --> Increment
  Increment --> Check42
  Check42 --> Increment
  Check42 --> [*]\
""")


def _docstring_examples() -> list[tuple[str, str]]:
    """Every ```python block in tracegraph's docstrings that states its output with `#>` lines."""
    import importlib
    import inspect
    import pkgutil

    found: list[tuple[str, str]] = []
    for info in pkgutil.walk_packages(tracegraph.__path__, 'tracegraph.'):
        if info.name.startswith(('tracegraph.dashboard', 'tracegraph.cli', 'tracegraph.exporters')):
            continue
        module = importlib.import_module(info.name)
        for obj in [module, *vars(module).values()]:
            if getattr(obj, '__module__', info.name) != info.name:
                continue
            doc = inspect.getdoc(obj) or ''
            for i, block in enumerate(re.findall(r'```python\n(.*?)```', doc, re.S)):
                if '#>' in block:
                    found.append((f'{info.name}.{getattr(obj, "__qualname__", "")}[{i}]', block))
    return found


@pytest.mark.parametrize(('where', 'source'), _docstring_examples(), ids=lambda v: v if '\n' not in v else '')
def test_docstring_examples(where: str, source: str, capsys: pytest.CaptureFixture[str]) -> None:
    source = textwrap.dedent(source)
    code = '\n'.join(line for line in source.splitlines() if not line.lstrip().startswith('#>'))
    expected = '\n'.join(
        line.lstrip()[3:] if line.lstrip() != '#>' else ''
        for line in source.splitlines()
        if line.lstrip().startswith('#>')
    )
    module = types.ModuleType(f'docexample_{abs(hash(where))}')
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    try:
        exec(compile(code, where, 'exec'), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    assert capsys.readouterr().out.rstrip('\n') == expected.rstrip('\n'), where


def test_docstring_examples_were_found() -> None:
    assert len(_docstring_examples()) >= 5
