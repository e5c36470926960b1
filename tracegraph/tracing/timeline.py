"""`NodeTimeline`: one graph run as the list of its node steps, the model shared by exporters, CLI and dashboard.

A timeline is built either from a live run (`GraphRun.timeline`) or from finished spans
(`NodeTimeline.from_spans`), and the two agree on the same run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from ..presentation.html import timeline_html
from ..presentation.text import timeline_text
from . import attributes as attr
from .clock import ns_to_datetime

__all__ = (
    'FinishedSpan',
    'NodeError',
    'NodeRecord',
    'NodeTimeline',
    'RunOutcome',
)

RunOutcome = Literal['completed', 'failed', 'interrupted', 'running']
"""A run's outcome; `running` only for a timeline taken from a run still in progress."""


class NodeError(BaseModel):
    """The exception a node step raised."""

    model_config = ConfigDict(frozen=True)

    type: str
    """Qualified name of the exception class, e.g. `ValueError`."""
    message: str
    """`str()` of the exception."""
    traceback: str | None = None
    """Formatted traceback, when the source recorded one."""


class NodeRecord(BaseModel):
    """One node step of a run."""

    step: int
    """1-based position of the step in its run."""
    node_id: str
    span_id: str | None
    """16-hex id of the node span, None when nothing was recording."""
    start: datetime
    end: datetime
    duration: float
    """Seconds."""
    outcome: attr.Outcome | str
    """One of `attr.Outcome`; a span written by other code may carry any text, which is kept as it is."""
    next_node: str | None
    """Id of the node returned (`End` when the run ended), None when the step failed or was interrupted."""
    error: NodeError | None = None


class NodeTimeline(BaseModel):
    """A graph run as the ordered list of its node steps.

    Example:
        ```python
        from datetime import datetime, timedelta, timezone

        from tracegraph import NodeTimeline
        from tracegraph.tracing.timeline import NodeRecord

        t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
        timeline = NodeTimeline(
            run_id='r1', trace_id=None, graph='g', outcome='completed', start=t0, end=t0 + timedelta(seconds=3),
            nodes=[
                NodeRecord(step=1, node_id='A', span_id=None, start=t0, end=t0 + timedelta(seconds=1),
                           duration=1.0, outcome='completed', next_node='B'),
                NodeRecord(step=2, node_id='B', span_id=None, start=t0 + timedelta(seconds=1),
                           end=t0 + timedelta(seconds=3), duration=2.0, outcome='completed', next_node='End'),
            ],
        )
        print(timeline.render(width=20))
        #> g  run r1  completed  3.000s
        #>   1 A  |███████             |   1.000s  completed
        #>   2 B  |      █████████████ |   2.000s  completed
        ```
    """

    run_id: str
    trace_id: str | None
    graph: str
    outcome: RunOutcome | str
    """One of `RunOutcome`; a span written by other code may carry any text, which is kept as it is."""
    start: datetime
    end: datetime | None
    nodes: list[NodeRecord]

    @property
    def duration(self) -> float | None:
        """Seconds from the run's start to its end, None while it runs."""
        return None if self.end is None else (self.end - self.start).total_seconds()

    def rows(self) -> list[dict[str, Any]]:
        """One dict per node step (graph, run_id, trace_id, step, node_id, span_id, start, end, duration, outcome,
        next_node, error_type, error_message), for DataFrames and CSV."""
        from .timeline_tables import timeline_rows

        return timeline_rows(self)

    def to_csv(self) -> str:
        """`rows()` as CSV text with a header row: times in ISO 8601, durations in seconds."""
        from .timeline_tables import timeline_csv

        return timeline_csv(self)

    def to_arrow(self) -> Any:
        """The steps as a `pyarrow.Table` (the columns of `rows()`); needs pyarrow (the `dashboard` extra)."""
        from .timeline_tables import timeline_arrow

        return timeline_arrow(self)

    def to_pandas(self) -> Any:
        """The steps as a pandas `DataFrame` (the columns of `rows()`); needs pyarrow and pandas."""
        from .timeline_tables import timeline_pandas

        return timeline_pandas(self)

    def _repr_html_(self) -> str:
        """Jupyter shows a timeline as an SVG Gantt chart of its steps."""
        return timeline_html(self)

    def render(self, *, width: int = 40) -> str:
        """A plain-text Gantt chart: a header line, then one line per node step with a bar scaled to its duration."""
        return timeline_text(self, width=width)

    @classmethod
    def from_spans(cls, spans: Iterable[FinishedSpan], *, run_id: str | None = None) -> NodeTimeline:
        """Build the timeline of one run from its finished spans (e.g. SDK `ReadableSpan`s).

        Args:
            spans: finished spans holding the run span and its node spans; other spans are ignored.
            run_id: which run to build when `spans` hold several.

        Raises:
            ValueError: when `spans` hold no run, or several runs and `run_id` is not given.
        """
        timelines = cls.all_from_spans(spans)
        if run_id is not None:
            timelines = [t for t in timelines if t.run_id == run_id]
        if not timelines:
            raise ValueError('No tracegraph run found in the spans' + (f' with run id {run_id!r}.' if run_id else '.'))
        if len(timelines) > 1:
            ids = ', '.join(t.run_id for t in timelines)
            raise ValueError(f'The spans hold {len(timelines)} runs ({ids}); pass `run_id=` to choose one.')
        return timelines[0]

    @classmethod
    def all_from_spans(cls, spans: Iterable[FinishedSpan]) -> list[NodeTimeline]:
        """Build a timeline for every run found in `spans`, ordered by start time."""
        run_spans: dict[str, FinishedSpan] = {}
        node_spans: dict[str, list[FinishedSpan]] = {}
        for span in spans:
            attrs = span.attributes or {}
            run_id = attrs.get(attr.RUN_ID)
            if not isinstance(run_id, str):
                continue
            if attr.NODE_ID in attrs:
                node_spans.setdefault(run_id, []).append(span)
            else:
                run_spans[run_id] = span
        timelines = [
            _timeline_from_spans(run_id, run_span, node_spans.get(run_id, [])) for run_id, run_span in run_spans.items()
        ]
        return sorted(timelines, key=lambda t: t.start)


class _SpanContext(Protocol):
    @property
    def trace_id(self) -> int: ...
    @property
    def span_id(self) -> int: ...


class _Status(Protocol):
    @property
    def status_code(self) -> Any: ...


class _Event(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def attributes(self) -> Mapping[str, Any] | None: ...


class FinishedSpan(Protocol):
    """What `NodeTimeline.from_spans` reads of a span: the fields of the OpenTelemetry SDK's `ReadableSpan`."""

    @property
    def name(self) -> str: ...
    @property
    def context(self) -> _SpanContext | None: ...
    @property
    def attributes(self) -> Mapping[str, Any] | None: ...
    @property
    def start_time(self) -> int | None: ...
    @property
    def end_time(self) -> int | None: ...
    @property
    def status(self) -> _Status: ...
    @property
    def events(self) -> Sequence[_Event]: ...


def _span_error(span: FinishedSpan) -> NodeError | None:
    for event in span.events:
        if event.name == 'exception':
            ev = event.attributes or {}
            return NodeError(
                type=str(ev.get('exception.type', 'Exception')),
                message=str(ev.get('exception.message', '')),
                traceback=str(ev['exception.stacktrace']) if 'exception.stacktrace' in ev else None,
            )
    return None


def _outcome(span: FinishedSpan, key: str) -> str:
    value = (span.attributes or {}).get(key)
    if isinstance(value, str):
        return value
    return 'failed' if getattr(span.status.status_code, 'name', '') == 'ERROR' else 'completed'


def _step(value: object, default: int) -> int:
    # a foreign span's step may be any attribute value: it orders the steps, it must never fail the timeline
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _timeline_from_spans(run_id: str, run_span: FinishedSpan, nodes: list[FinishedSpan]) -> NodeTimeline:
    attrs = run_span.attributes or {}
    ctx = run_span.context
    records: list[NodeRecord] = []
    for span in sorted(nodes, key=lambda s: (_step((s.attributes or {}).get(attr.NODE_STEP), 0), s.start_time or 0)):
        a = span.attributes or {}
        start, end = span.start_time or 0, span.end_time or span.start_time or 0
        next_node = a.get(attr.NODE_NEXT)
        records.append(
            NodeRecord(
                step=_step(a.get(attr.NODE_STEP), len(records) + 1),
                node_id=str(a[attr.NODE_ID]),
                span_id=f'{span.context.span_id:016x}' if span.context else None,
                start=ns_to_datetime(start),
                end=ns_to_datetime(end),
                duration=(end - start) / 1e9,
                outcome=_outcome(span, attr.NODE_OUTCOME),
                next_node=str(next_node) if next_node is not None else None,
                error=_span_error(span),
            )
        )
    return NodeTimeline(
        run_id=run_id,
        trace_id=f'{ctx.trace_id:032x}' if ctx else None,
        graph=str(attrs.get(attr.GRAPH_NAME, '')),
        outcome=_outcome(run_span, attr.RUN_OUTCOME),
        start=ns_to_datetime(run_span.start_time or 0),
        end=ns_to_datetime(run_span.end_time) if run_span.end_time else None,
        nodes=records,
    )
