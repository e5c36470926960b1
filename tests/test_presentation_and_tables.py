"""A run's timeline in a notebook (HTML) and as rows, an Arrow table and a pandas DataFrame, from a real run."""

# pyright: reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false
# (pyarrow and pandas ship no complete type hints)

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
from tracing_helpers import make_pipeline

from tracegraph import BaseNode, End, Graph, GraphRunContext, GraphRunResult, NodeTimeline
from tracegraph.presentation.html import OUTCOME_COLOURS
from tracegraph.tracing.timeline_tables import ROW_FIELDS


@dataclass
class Fetch(BaseNode[None, None, str]):
    async def run(self, ctx: GraphRunContext) -> Answer:
        return Answer()


@dataclass
class Answer(BaseNode[None, None, str]):
    async def run(self, ctx: GraphRunContext) -> End[str]:
        return End('42')


def _run() -> tuple[GraphRunResult[None, str], NodeTimeline]:
    pipeline = make_pipeline()
    graph = Graph(nodes=(Fetch, Answer), name='<agent>', instrumentation=pipeline.settings())
    result = graph.run_sync(Fetch())
    return result, result.timeline


def test_a_timeline_renders_as_an_svg_gantt_in_notebooks() -> None:
    result, timeline = _run()
    html = timeline._repr_html_()  # pyright: ignore[reportPrivateUsage]  # the notebook display protocol
    assert html.startswith('<div class="tracegraph"><div><b>&lt;agent&gt;</b> run <code>')
    assert html.count('<rect ') == 2 and html.count(f'fill="{OUTCOME_COLOURS["completed"]}"') == 2
    assert '<title>step 1: Fetch ' in html and '<title>step 2: Answer ' in html
    assert result._repr_html_() == html  # pyright: ignore[reportPrivateUsage]


def test_rows_arrow_and_pandas_hold_one_row_per_step() -> None:
    _, timeline = _run()
    rows = timeline.rows()
    assert [(r['step'], r['node_id'], r['outcome'], r['next_node']) for r in rows] == [
        (1, 'Fetch', 'completed', 'Answer'),
        (2, 'Answer', 'completed', 'End'),
    ]
    assert all(set(r) == set(ROW_FIELDS) and isinstance(r['start'], datetime) for r in rows)
    table = timeline.to_arrow()
    assert table.column_names == list(ROW_FIELDS)
    assert table.schema.field('start').type == pa.timestamp('us', tz='UTC')
    assert table.column('node_id').to_pylist() == ['Fetch', 'Answer']
    frame = timeline.to_pandas()
    assert list(frame['node_id']) == ['Fetch', 'Answer'] and frame['duration'].ge(0).all()
