"""`tracegraph report` figures from a JSON Lines span file written by the real file exporter."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from rich.console import Console

from tracegraph import BaseNode, End, Graph, GraphRunContext, InstrumentationSettings
from tracegraph.dashboard.report import build_report, load_span_file, render_report
from tracegraph.exporters import JsonLinesSpanExporter

pytestmark = pytest.mark.anyio


@dataclass
class Work(BaseNode[None, None, int]):
    n: int

    async def run(self, ctx: GraphRunContext) -> Work | Check | End[int]:
        return Work(self.n - 1) if self.n > 0 else Check(self.n)


@dataclass
class Check(BaseNode[None, None, int]):
    n: int

    async def run(self, ctx: GraphRunContext) -> End[int]:
        if self.n < 0:
            raise ValueError('negative')
        return End(self.n)


async def test_report_from_span_file(tmp_path: Path) -> None:
    path = tmp_path / 'spans.jsonl'
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(path)))
    graph = Graph(nodes=[Work, Check], name='work', instrumentation=InstrumentationSettings(tracer_provider=provider))
    results = [await graph.run(Work(3)) for _ in range(3)]
    with pytest.raises(ValueError, match='negative'):
        await graph.run(Check(-1))
    provider.shutdown()

    store = load_span_file(path)
    try:
        report = build_report(store, source=str(path))
    finally:
        store.close()
    [g] = report.graphs
    assert (g.graph, g.runs, g.failed_runs) == ('work', 4, 1)
    nodes = {n.node_id: n for n in g.nodes}
    assert (nodes['Work'].count, nodes['Work'].error_rate) == (12, 0.0)
    assert (nodes['Check'].count, nodes['Check'].error_rate) == (4, 0.25)
    assert 0 < sum(n.share for n in g.nodes) <= 1
    assert len(g.slowest) == 4
    assert {r.trace_id for r in g.slowest} >= {r.trace_id for r in results}
    assert g.slowest[0].duration >= g.slowest[-1].duration

    out = io.StringIO()
    render_report(report, Console(file=out, width=150))
    text = out.getvalue()
    assert 'work  4 runs, 1 failed' in text
    assert '25.0%' in text  # Check's error rate
    assert g.slowest[0].trace_id in text
    assert report.model_dump(mode='json')['graphs'][0]['nodes'][0]['node_id'] == 'Work'


def test_report_of_empty_file(tmp_path: Path) -> None:
    path = tmp_path / 'empty.jsonl'
    path.write_text('')
    store = load_span_file(path)
    report = build_report(store, source=str(path))
    store.close()
    out = io.StringIO()
    render_report(report, Console(file=out, width=300))
    assert out.getvalue() == f'no graph runs in {path}\n'


def test_report_command_json_and_errors(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    path = tmp_path / 'spans.jsonl'
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(path)))
    graph = Graph(nodes=[Work, Check], name='work', instrumentation=InstrumentationSettings(tracer_provider=provider))
    graph.run_sync(Work(1))
    provider.shutdown()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, '-m', 'tracegraph.cli', 'report', *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, env={'COLUMNS': '200', 'PATH': ''})

    done = cli('--file', str(path), '--json')
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [(n['node_id'], n['count']) for n in data['graphs'][0]['nodes']] == [('Work', 2), ('Check', 1)]

    missing = cli('--file', str(tmp_path / 'nope.jsonl'))
    assert missing.returncode == 2
    assert f'error: no span file at {tmp_path / "nope.jsonl"}' in ' '.join(missing.stderr.split())
    bad_since = cli('--file', str(path), '--since', 'yesterday')
    assert bad_since.returncode == 2
    assert 'error: --since:' in bad_since.stderr

    table = cli('--file', str(path), '--format', 'csv')
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == 'graph,node_id,count,error_rate,p50,p95,p99,total,share'
    assert [line.split(',')[:3] for line in lines[1:]] == [['work', 'Work', '2'], ['work', 'Check', '1']]
    done = cli('--file', str(path), '--format', 'parquet', '--output', str(tmp_path / 'nodes.parquet'))
    assert done.returncode == 0, done.stderr
    import pyarrow.parquet

    pq: Any = pyarrow.parquet  # pyarrow ships no complete type hints

    assert pq.read_table(tmp_path / 'nodes.parquet').column('node_id').to_pylist() == ['Work', 'Check']
    no_file = cli('--file', str(path), '--format', 'parquet')
    assert (no_file.returncode, no_file.stderr.strip()) == (
        2,
        'error: --format parquet writes a file: pass --output FILE',
    )
    wrong = cli('--file', str(path), '--format', 'xml')
    assert (wrong.returncode, wrong.stderr.strip()) == (
        2,
        "error: --format must be table, json, csv or parquet, got 'xml'",
    )
