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
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..tracing import attributes as attr
from ..tracing.timeline import NodeTimeline, bar_cells, format_duration, run_duration_text

__all__ = ('ConsoleTimelineProcessor', 'render_timeline')

_FILE_WIDTH = 120
_STYLES = {'completed': 'green', 'failed': 'bold red', 'interrupted': 'yellow', 'running': 'cyan'}


def render_timeline(timeline: NodeTimeline, *, width: int = 30, trace: bool = False) -> RenderableType:
    """A Rich renderable of one run: a header, then one row per node step with a bar scaled to its duration.

    The one terminal rendering of a run: the console exporter prints it, and so does `tracegraph demo`.

    Args:
        timeline: the run.
        width: width of the bars, in characters.
        trace: also name the run's trace id in the header (to find it in a tracing backend).
    """
    header = Text.assemble(
        (timeline.graph, 'bold'),
        f'  run {timeline.run_id}  ',
        (timeline.outcome, _STYLES.get(timeline.outcome, '')),
        f'  {run_duration_text(timeline)}',
        f'  trace {timeline.trace_id or "-"}' if trace else '',
    )
    table = Table(box=None, show_header=True, header_style='dim', pad_edge=False, padding=(0, 1))
    # too narrow a terminal cuts the outcome's tail (…), never the step, node, bar or duration
    table.add_column('step', justify='right', no_wrap=True)
    table.add_column('node', no_wrap=True)
    table.add_column('timeline', no_wrap=True)
    table.add_column('duration', justify='right', no_wrap=True)
    table.add_column('outcome', no_wrap=True)
    for node in timeline.nodes:
        first, length = bar_cells(timeline, node, width)
        style = _STYLES.get(node.outcome, '')
        bar = Text.assemble(' ' * first, ('█' * length, style), ' ' * (width - first - length))
        outcome = Text(node.outcome, style=style)
        if node.error is not None:
            outcome.append(f'  {node.error.type}: {node.error.message}', style='red')
        elif node.next_node is not None:
            outcome.append(f' → {node.next_node}', style='dim')
        table.add_row(str(node.step), node.node_id, bar, format_duration(node.duration), outcome)
    return Group(header, table)


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
