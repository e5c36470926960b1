"""`ConsoleTimelineProcessor`: print a Rich timeline of each graph run when its run span ends.

One rendering per run (node, duration bar, outcome), not one line per span: node spans are held back,
keyed by run id, until their run span ends.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import IO

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from ...presentation.text import bar_cells, format_duration, run_duration_text
from ...tracing import attributes as attr
from ...tracing.timeline import NodeTimeline

__all__ = ('ConsoleTimelineProcessor', 'render_timeline')

_FILE_WIDTH = 120
_STYLES = {'completed': 'green', 'failed': 'bold red', 'interrupted': 'yellow', 'running': 'cyan'}


_OUTCOME_MIN = 28
"""Cells the outcome column keeps before the bars give up theirs: `completed → NextNode` or an error's first words."""
_BAR_MIN = 8


def render_timeline(timeline: NodeTimeline, *, width: int = 30, trace: bool = False) -> RenderableType:
    """A Rich renderable of one run: a header, then one row per node step with a bar scaled to its duration.

    The one terminal rendering of a run: the console exporter prints it, and so does `tracegraph demo`. A narrow
    console narrows the bars (down to 8 cells) and then wraps the outcome column, where an error's message is; the
    step, node and duration are never cut.

    Args:
        timeline: the run.
        width: width of the bars, in characters, where the console has room for them.
        trace: also name the run's trace id in the header (to find it in a tracing backend).
    """
    return _TimelineView(timeline, width, trace)


class _TimelineView:
    """`render_timeline`'s renderable: laid out when printed, for the console's width."""

    def __init__(self, timeline: NodeTimeline, width: int, trace: bool) -> None:
        self.timeline = timeline
        self.width = width
        self.trace = trace

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        timeline = self.timeline
        yield Text.assemble(
            (timeline.graph, 'bold'),
            f'  run {timeline.run_id}  ',
            (timeline.outcome, _STYLES.get(timeline.outcome, '')),
            f'  {run_duration_text(timeline)}',
            f'  trace {timeline.trace_id or "-"}' if self.trace else '',
        )
        rows = timeline.nodes
        durations = [format_duration(n.duration) for n in rows]
        steps = max([len('step'), *(len(str(n.step)) for n in rows)])
        nodes = max([len('node'), *(len(n.node_id) for n in rows)])
        duration = max([len('duration'), *map(len, durations)])
        room = options.max_width - (steps + nodes + duration + 4) - _OUTCOME_MIN  # 4 one-cell gaps between columns
        width = max(_BAR_MIN, min(self.width, room))
        table = Table(box=None, show_header=True, header_style='dim', pad_edge=False, padding=(0, 1))
        table.add_column('step', justify='right', no_wrap=True, min_width=steps)
        table.add_column('node', no_wrap=True, min_width=nodes)
        table.add_column('timeline', no_wrap=True, min_width=width)
        table.add_column('duration', justify='right', no_wrap=True, min_width=duration)
        table.add_column('outcome', overflow='fold', ratio=1)
        for node, took in zip(rows, durations):
            first, length = bar_cells(timeline, node, width)
            style = _STYLES.get(node.outcome, '')
            bar = Text.assemble(' ' * first, ('█' * length, style), ' ' * (width - first - length))
            outcome = Text(node.outcome, style=style)
            if node.error is not None:
                outcome.append(f'  {node.error.type}: {node.error.message}', style='red')
            elif node.next_node is not None:
                outcome.append(f' → {node.next_node}', style='dim')
            table.add_row(str(node.step), node.node_id, bar, took, outcome)
        yield table


class ConsoleTimelineProcessor(SpanProcessor):
    """Prints the timeline of every tracegraph run to a console when the run ends.

    Args:
        file: where to print (standard error when None).
        width: width of the duration bars, in characters.
        max_pending_runs: runs whose node spans are held while they run; beyond it the oldest are forgotten,
            so a process that starts runs it never ends cannot grow without bound.
    """

    def __init__(self, file: IO[str] | None = None, *, width: int = 30, max_pending_runs: int = 1000) -> None:
        self.console = Console(file=file, stderr=file is None, highlight=False, soft_wrap=False)
        if not self.console.is_terminal:
            self.console.width = max(self.console.width, _FILE_WIDTH)  # a log file has no edge to fit: cut nothing
        self.width = width
        self.max_pending_runs = max_pending_runs
        self._pending: OrderedDict[str, list[ReadableSpan]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def pending_runs(self) -> list[str]:
        """Run ids whose node spans are held until their run span ends, oldest first."""
        with self._lock:
            return list(self._pending)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        """Hold node spans; on a run span, render its run."""
        attrs = span.attributes or {}
        run_id = attrs.get(attr.RUN_ID)
        if not isinstance(run_id, str):
            return
        with self._lock:
            if attr.NODE_ID in attrs:
                self._pending.setdefault(run_id, []).append(span)
                while len(self._pending) > self.max_pending_runs:
                    self._pending.popitem(last=False)
                return
            nodes = self._pending.pop(run_id, [])
        timeline = NodeTimeline.from_spans([*nodes, span], run_id=run_id)
        self.console.print(render_timeline(timeline, width=self.width))

    def shutdown(self) -> None:
        with self._lock:
            self._pending.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
