"""A graph run under the zero-code agent (`opentelemetry-instrument`), its spans read back from `tracegraph serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from exporters_helpers import OtlpHttpReceiver

from tracegraph.dashboard.server.server import ServerThread

AGENT = Path(sys.executable).parent / 'opentelemetry-instrument'

APP = textwrap.dedent(
    """
    from __future__ import annotations

    import asyncio
    from dataclasses import dataclass

    from tracegraph import BaseNode, End, Graph, GraphRunContext


    @dataclass
    class Greet(BaseNode[None, None, str]):
        async def run(self, ctx: GraphRunContext) -> Ask:
            return Ask()


    @dataclass
    class Ask(BaseNode[None, None, str]):
        async def run(self, ctx: GraphRunContext) -> End[str]:
            return End('hi')


    print(asyncio.run(Graph(nodes=[Greet, Ask], name='zero-code').run(Greet())).output)
    """
)


@pytest.mark.skipif(not AGENT.exists(), reason='opentelemetry-distro is not installed (the dev extra has it)')
def test_a_graph_under_the_zero_code_agent_reaches_the_dashboard_over_grpc(tmp_path: Path) -> None:
    (tmp_path / 'app.py').write_text(APP)
    with ServerThread(grpc_port=0) as server:
        env = {
            **os.environ,
            'OTEL_SERVICE_NAME': 'zero-code-app',
            'OTEL_EXPORTER_OTLP_ENDPOINT': server.grpc_url,  # the agent's default protocol is gRPC
            'OTEL_EXPORTER_OTLP_INSECURE': 'true',
            'OTEL_METRICS_EXPORTER': 'none',
            'OTEL_LOGS_EXPORTER': 'none',
        }
        env.pop('OTEL_EXPORTER_OTLP_PROTOCOL', None)
        done = subprocess.run(
            [str(AGENT), sys.executable, 'app.py'], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert (done.returncode, done.stdout.strip()) == (0, 'hi'), done.stderr
        assert server.store is not None
        (run,) = server.store.runs()
        detail = server.store.run(run.trace_id)
    assert (run.graph, run.service, run.outcome, run.steps) == ('zero-code', 'zero-code-app', 'completed', 2)
    assert detail is not None
    assert [(n.node_id, n.next_node) for n in detail.timeline.nodes] == [('Greet', 'Ask'), ('Ask', 'End')]


@pytest.mark.skipif(not AGENT.exists(), reason='opentelemetry-distro is not installed (the dev extra has it)')
def test_configure_under_the_zero_code_agent_sends_each_span_once(tmp_path: Path) -> None:
    """The agent's provider exports over OTLP already: `configure()` joins it and adds no second exporter."""
    app = APP.replace(
        'print(asyncio.run(', 'from tracegraph.exporters import configure\n\nconfigure()\nprint(asyncio.run('
    )
    (tmp_path / 'app.py').write_text(app)
    with OtlpHttpReceiver() as receiver:
        env = {
            **os.environ,
            'OTEL_SERVICE_NAME': 'zero-code-app',
            'OTEL_EXPORTER_OTLP_ENDPOINT': receiver.endpoint,
            'OTEL_EXPORTER_OTLP_PROTOCOL': 'http/protobuf',
            'OTEL_METRICS_EXPORTER': 'none',
            'OTEL_LOGS_EXPORTER': 'none',
        }
        done = subprocess.run(
            [str(AGENT), sys.executable, 'app.py'], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert (done.returncode, done.stdout.strip()) == (0, 'hi'), done.stderr
        spans = receiver.spans()
    names = sorted(s.span.name for s in spans)
    assert names == ['run graph zero-code', 'run node Ask', 'run node Greet']  # each once
    assert 'already exports spans' in done.stderr and 'without a second OTLP exporter' in done.stderr
