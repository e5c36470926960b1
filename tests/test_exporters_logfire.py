"""Logfire: `logfire.configure()` alone shows tracegraph's spans; `configure()` afterwards joins its provider.

Each case runs in a child process, because Logfire (like OpenTelemetry) sets process-wide providers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from exporters_helpers import OtlpHttpReceiver


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).parent)}
    env.pop('LOGFIRE_TOKEN', None)
    return subprocess.run(
        [sys.executable, '-c', textwrap.dedent(code), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_logfire_configure_alone_sees_every_tracegraph_span() -> None:
    done = _run(
        """
        import asyncio
        import logfire
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from exporters_helpers import Explode, Increment, counter_graph

        memory = InMemorySpanExporter()
        logfire.configure(
            send_to_logfire=False, console=False, additional_span_processors=[SimpleSpanProcessor(memory)]
        )
        graph = counter_graph()
        asyncio.run(graph.run(Increment(2)))
        try:
            asyncio.run(graph.run(Explode()))
        except ValueError:
            pass
        spans = memory.get_finished_spans()
        ids = {s.context.span_id: s.name for s in spans}
        for s in spans:
            parent = ids.get(s.parent.span_id) if s.parent else None
            print(s.name, '|', parent, '|', s.attributes['logfire.msg'], '|', s.status.status_code.name,
                  '|', [e.name for e in s.events])
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        'run node Increment | run graph counter | run node Increment | UNSET | []',
        'run node Increment | run graph counter | run node Increment | UNSET | []',
        'run graph counter | None | run graph counter | UNSET | []',
        "run node Explode | run graph counter | run node Explode | ERROR | ['exception']",
        "run graph counter | None | run graph counter | ERROR | ['exception']",
    ]
    assert done.stderr == ''


def test_configure_after_logfire_adds_exporters_to_its_provider_and_says_so_once() -> None:
    with OtlpHttpReceiver() as receiver:
        done = _run(
            """
            import asyncio, logging, sys
            import logfire
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
            from exporters_helpers import Increment, counter_graph
            from tracegraph.exporters import configure

            logging.basicConfig(level=logging.INFO, format='%(name)s: %(message)s', stream=sys.stdout)
            memory = InMemorySpanExporter()
            logfire.configure(
                send_to_logfire=False, console=False, additional_span_processors=[SimpleSpanProcessor(memory)]
            )
            first = configure(endpoint=sys.argv[1], metrics=False)
            second = configure(endpoint=sys.argv[1], metrics=False)
            print('owns provider:', first.owns_tracer_provider, second.owns_tracer_provider)
            asyncio.run(counter_graph().run(Increment(2)))
            first.shutdown()
            second.shutdown()
            print('logfire saw', len(memory.get_finished_spans()))
            """,
            receiver.endpoint,
        )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    announcements = [line for line in lines if 'already exists' in line]
    assert len(announcements) == 1
    assert announcements[0].startswith('tracegraph.exporters: tracegraph: a global TracerProvider (')
    assert announcements[0].endswith('already exists; adding tracegraph exporters to it instead of replacing it')
    assert 'owns provider: False False' in lines
    assert 'logfire saw 3' in lines
    # both handles exported every span once
    assert sorted(s.span.name for s in receiver.spans()) == ['run graph counter'] * 2 + ['run node Increment'] * 4


def test_logfire_configured_after_configure_gets_told_what_to_do() -> None:
    done = _run(
        """
        import logging, sys
        import logfire
        from tracegraph.exporters import configure

        logging.basicConfig(level=logging.WARNING, format='%(name)s: %(message)s', stream=sys.stdout)
        telemetry = configure(console=True, metrics=False)  # first: installs the global provider
        logfire.configure(send_to_logfire=False, console=False)  # second: OpenTelemetry keeps the first
        telemetry.shutdown()
        """
    )
    assert done.returncode == 0, done.stderr
    from tracegraph.exporters.pipeline import LATE_PROVIDER_MESSAGE

    assert f'tracegraph.exporters: {LATE_PROVIDER_MESSAGE}' in done.stdout.splitlines()


def test_logfire_verbose_console_shows_values_not_none() -> None:
    """Logfire's console prints a span's schema attributes when the span starts: the schema names only what the
    span holds then, and grows with the state and the output the span gets at its end."""
    done = _run(
        """
        import asyncio, io, json
        from dataclasses import dataclass, field
        import logfire
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from tracegraph import BaseNode, End, Graph, GraphRunContext, InstrumentationSettings

        out, memory = io.StringIO(), InMemorySpanExporter()
        logfire.configure(
            send_to_logfire=False,
            console=logfire.ConsoleOptions(verbose=True, output=out, colors='never'),
            additional_span_processors=[SimpleSpanProcessor(memory)],
        )

        @dataclass
        class Basket:
            items: list[str] = field(default_factory=list)

        @dataclass
        class Add(BaseNode[Basket, None, int]):
            item: str

            async def run(self, ctx: GraphRunContext[Basket]) -> End[int]:
                ctx.state.items.append(self.item)
                return End(len(ctx.state.items))

        graph = Graph(nodes=[Add], name='shop', instrumentation=InstrumentationSettings(state='diff'))
        asyncio.run(graph.run(Add('tea'), state=Basket()))
        print(out.getvalue())
        for span in memory.get_finished_spans():
            print(span.name, sorted(json.loads(span.attributes['logfire.json_schema'])['properties']))
        """
    )
    assert done.returncode == 0, done.stderr
    assert '=None' not in done.stdout
    assert "'item': 'tea'," in done.stdout  # the node input, which the span has from its start
    assert done.stdout.splitlines()[-2:] == [
        "run node Add ['tracegraph.node.input', 'tracegraph.state.diff']",
        "run graph shop ['tracegraph.run.output']",
    ]
