"""Libraries written against pydantic_graph run unchanged on tracegraph: pydantic_ai 0.0.36 (the classic API) on
`tracegraph` and pydantic_ai 1.0 (the 1.x API) on `tracegraph.v1`.

Each client gets a venv of its own on the pins of its own lock (tests/requirements-pydantic-ai-*.txt), made once under
test-output/ and reused; tracegraph is taken from this checkout. `pydantic_graph` and its submodules are mapped to
tracegraph's modules before pydantic_ai is imported (in a fresh interpreter, so the alias reaches no other test);
the client's own `pydantic-graph` pin is installed beside it, and the alias must win. The agents are driven through
their own paths (`Agent.iter` with `AgentRun.next`, `async for`, `run`, `run_sync`, `run_stream`) with pydantic_ai's
offline `TestModel` and `FunctionModel`, under a real OpenTelemetry SDK pipeline.
"""

from __future__ import annotations

import json
import os
import string
import subprocess
import textwrap
import venv
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _client_python(version: str) -> Path:
    """The interpreter of a venv holding pydantic-ai-slim `version` on its lock's pins, made when missing."""
    requirements = ROOT / 'tests' / f'requirements-pydantic-ai-{version}.txt'
    home = ROOT / 'test-output' / f'venv-pydantic-ai-{version}'
    python = home / ('Scripts' if os.name == 'nt' else 'bin') / 'python'
    stamp = home / '.installed'
    if not (stamp.exists() and stamp.read_bytes() == requirements.read_bytes() and python.exists()):
        venv.create(home, with_pip=True, clear=True)
        subprocess.run(
            [python, '-m', 'pip', 'install', '-q', '--disable-pip-version-check', '-r', requirements],
            check=True,
            timeout=900,
        )
        stamp.write_bytes(requirements.read_bytes())
    return python


def _run_client(python: Path, script: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(('OTEL_', 'PYTHON', 'LOGFIRE_'))}
    env['PYTHONPATH'] = str(ROOT)  # tracegraph from this checkout (its core needs only what pydantic_ai brings)
    check = subprocess.run(
        [python, '-c', 'import pydantic_graph, pydantic_ai; print(pydantic_graph.__file__)'],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert check.returncode == 0 and 'site-packages' in check.stdout, check.stderr  # the real pin is installed
    proc = subprocess.run(
        [python, '-W', 'error::DeprecationWarning', '-c', textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


CLIENT = string.Template("""
    import importlib, json, sys
    for name in $modules:
        sys.modules['pydantic_graph' + name] = importlib.import_module('$tree' + name)

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    import asyncio
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelResponse, TextPart
    from pydantic_ai.models.function import FunctionModel
    from pydantic_ai.models.test import TestModel
    from pydantic_graph import End

    agent = Agent(TestModel($text_argument='Paris'), system_prompt='Answer briefly.'$agent_options)

    @agent.tool_plain
    def country_capital(country: str) -> str:
        return f'The capital of {country} is Paris.'

    async def main():
        out = {'nodes': []}
        async with agent.iter('What is the capital of France?') as agent_run:
            graph_run = agent_run._graph_run
            out['graph_type'] = f'{type(graph_run.graph).__module__}.{type(graph_run.graph).__qualname__}'
            out['run_type'] = type(graph_run).__module__
            next_node = agent_run.next_node  # start with the first node
            out['nodes'].append(type(next_node).__name__)
            while not isinstance(next_node, End):
                next_node = await agent_run.next(next_node)
                out['nodes'].append(type(next_node).__name__)
            out['result'] = agent_run.result.$output
            out['end'] = repr(next_node)
            out['agent_run_traceparent'] = getattr(agent_run, '_traceparent', lambda required: None)(required=False)
        async with agent.iter('Again?') as agent_run:
            out['iter_nodes'] = [type(node).__name__ async for node in agent_run]
            out['iter_result'] = agent_run.result.$output
        result = await agent.run('Run?')
        out['run'] = result.$output
        out['result_traceparent'] = getattr(result, '_traceparent', lambda required: None)(required=False)
        async with agent.run_stream('Stream?') as stream:
            out['stream'] = await stream.$get_output()
        function_model = FunctionModel(lambda messages, info: ModelResponse(parts=[TextPart('from a function')]))
        out['function'] = (await agent.run('Function?', model=function_model)).$output
        out['pydantic_graph_is'] = sys.modules['pydantic_graph'].__name__
        return out

    out = asyncio.run(main())
    out['run_sync'] = agent.run_sync('And once more?').$output  # pydantic_ai's own run_sync, on our `get_event_loop`
    spans = exporter.get_finished_spans()
    out['span_names'] = sorted({span.name for span in spans})
    out['agent_run_traceparents'] = sorted(
        f'00-{s.context.trace_id:032x}-{s.context.span_id:016x}-{s.context.trace_flags:02x}'
        for s in spans if s.name == 'agent run'
    )
    print(json.dumps(out))
""")
"""Both clients' agent paths; the placeholders are where their APIs differ (`data` / `output`, the import tree)."""

CLASSIC_CLIENT = CLIENT.substitute(
    modules=('', '._utils', '.nodes', '.state', '.graph', '.mermaid', '.exceptions'),
    tree='tracegraph',
    text_argument='custom_result_text',
    agent_options='',
    output='data',
    get_output='get_data',
)
V1_CLIENT = CLIENT.substitute(
    modules=(
        *('', '._utils', '.nodes', '.basenode', '.graph', '.mermaid', '.exceptions'),
        *('.persistence', '.persistence.in_mem', '.persistence.file', '.persistence._utils'),
    ),
    tree='tracegraph.v1',
    text_argument='custom_output_text',
    agent_options=', instrument=True',
    output='output',
    get_output='get_output',
)

AGENT_NODES = ['UserPromptNode', 'ModelRequestNode', 'CallToolsNode', 'ModelRequestNode', 'CallToolsNode', 'End']


def test_pydantic_ai_0_0_36_runs_on_tracegraph() -> None:
    out = _run_client(_client_python('0.0.36'), CLASSIC_CLIENT)
    assert out['graph_type'] == 'tracegraph.graph.Graph'
    assert out['run_type'] == 'tracegraph.run'
    assert out['pydantic_graph_is'] == 'tracegraph'
    # The tool is called once by TestModel, then the text result ends the run.
    assert out['nodes'] == AGENT_NODES
    assert out['iter_nodes'] == AGENT_NODES[1:]  # the classic iteration: the start node is not yielded
    assert out['result'] == out['iter_result'] == out['run'] == out['stream'] == out['run_sync'] == 'Paris'
    assert out['function'] == 'from a function'
    assert out['end'] == "End(data=FinalResult(data='Paris', tool_name=None, tool_call_id=None))"


def test_pydantic_ai_1_0_runs_on_tracegraph_v1() -> None:
    out = _run_client(_client_python('1.0'), V1_CLIENT)
    assert out['graph_type'] == 'tracegraph.v1.graph.Graph'
    assert out['run_type'] == 'tracegraph.run'
    assert out['pydantic_graph_is'] == 'tracegraph.v1'
    assert out['nodes'] == AGENT_NODES
    assert out['iter_nodes'] == AGENT_NODES  # 0.0.54+: the start node first
    assert out['result'] == out['iter_result'] == out['run'] == out['stream'] == out['run_sync'] == 'Paris'
    assert out['function'] == 'from a function'
    assert out['end'] == "End(data=FinalResult(output='Paris'))"
    # pydantic_ai passes its own `agent run` span (graph built with auto_instrument=False) and reads it back.
    assert out['agent_run_traceparent'] in out['agent_run_traceparents']
    assert out['result_traceparent'] in out['agent_run_traceparents']
    assert 'agent run' in out['span_names']
