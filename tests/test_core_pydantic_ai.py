"""A library written against the classic pydantic_graph runs unchanged on tracegraph: pydantic_ai 0.0.36's agent.

`pydantic_graph` and its submodules are mapped to tracegraph's modules before pydantic_ai is imported (in a fresh
interpreter, so the alias reaches no other test); pydantic_ai's own `pydantic-graph` pin is installed beside it,
and the alias must win. The agent is driven with pydantic_ai's offline `TestModel`, as its documentation shows.

pydantic_ai 0.0.36 needs an opentelemetry-api older than the dev venv's, so it gets a venv of its own
(tests/requirements-pydantic-ai.txt), made once under test-output/ and reused; tracegraph is taken from this checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / 'tests' / 'requirements-pydantic-ai.txt'


@pytest.fixture(scope='session')
def pydantic_ai_python() -> Path:
    """The interpreter of a venv holding pydantic-ai-slim 0.0.36 (and its pydantic-graph pin), made when missing."""
    home = ROOT / 'test-output' / 'venv-pydantic-ai'
    python = home / ('Scripts' if os.name == 'nt' else 'bin') / 'python'
    stamp = home / '.installed'
    if not (stamp.exists() and stamp.read_bytes() == REQUIREMENTS.read_bytes() and python.exists()):
        venv.create(home, with_pip=True, clear=True)
        subprocess.run(
            [python, '-m', 'pip', 'install', '-q', '--disable-pip-version-check', '-r', REQUIREMENTS],
            check=True,
            timeout=600,
        )
        stamp.write_bytes(REQUIREMENTS.read_bytes())
    return python


ALIASED_AGENT_RUN = """
    import importlib, json, sys
    import tracegraph
    for name in ('', '._utils', '.nodes', '.state', '.graph', '.mermaid', '.exceptions'):
        sys.modules['pydantic_graph' + name] = importlib.import_module('tracegraph' + name)

    import asyncio
    from pydantic_ai import Agent
    from pydantic_ai.models.test import TestModel
    from pydantic_graph import End

    agent = Agent(TestModel(custom_result_text='Paris'), system_prompt='Answer briefly.')

    @agent.tool_plain
    def country_capital(country: str) -> str:
        return f'The capital of {country} is Paris.'

    async def main():
        graph = agent._build_graph(None)
        out = {'graph_type': f'{type(graph).__module__}.{type(graph).__qualname__}', 'nodes': [], 'iter_nodes': []}
        async with agent.iter('What is the capital of France?') as agent_run:
            out['run_type'] = type(agent_run._graph_run).__module__
            next_node = agent_run.next_node  # start with the first node
            out['nodes'].append(type(next_node).__name__)
            while not isinstance(next_node, End):
                next_node = await agent_run.next(next_node)
                out['nodes'].append(type(next_node).__name__)
            out['result'] = agent_run.result.data
            out['end'] = repr(next_node)
        async with agent.iter('Again?') as agent_run:
            async for node in agent_run:
                out['iter_nodes'].append(type(node).__name__)
            out['iter_result'] = agent_run.result.data
        out['pydantic_graph_is'] = sys.modules['pydantic_graph'].__name__
        return out

    out = asyncio.run(main())
    out['run_sync'] = agent.run_sync('And once more?').data  # pydantic_ai's own run_sync, on our `get_event_loop`
    print(json.dumps(out))
"""


def test_pydantic_ai_agent_runs_on_tracegraph(pydantic_ai_python: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(('OTEL_', 'PYTHON'))}
    env['PYTHONPATH'] = str(ROOT)  # tracegraph from this checkout (its core needs only what pydantic_ai brings)
    check = subprocess.run(
        [pydantic_ai_python, '-c', 'import pydantic_graph, pydantic_ai; print(pydantic_graph.__file__)'],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert check.returncode == 0 and 'site-packages' in check.stdout, check.stderr  # the real pin is installed
    proc = subprocess.run(
        [pydantic_ai_python, '-W', 'error::DeprecationWarning', '-c', textwrap.dedent(ALIASED_AGENT_RUN)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out['graph_type'] == 'tracegraph.graph.Graph'
    assert out['run_type'] == 'tracegraph.run'
    assert out['pydantic_graph_is'] == 'tracegraph'
    # The tool is called once by TestModel, then the text result ends the run.
    assert out['nodes'] == [
        'UserPromptNode',
        'ModelRequestNode',
        'CallToolsNode',
        'ModelRequestNode',
        'CallToolsNode',
        'End',
    ]
    assert out['iter_nodes'] == ['ModelRequestNode', 'CallToolsNode', 'ModelRequestNode', 'CallToolsNode', 'End']
    assert out['result'] == out['iter_result'] == out['run_sync'] == 'Paris'
    assert out['end'] == "End(data=FinalResult(data='Paris', tool_name=None, tool_call_id=None))"
