"""`tracegraph demo`: serve the dashboard (or use a reachable one), run the example graphs against it, show them."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..tracing.timeline import NodeTimeline, format_duration
from .runner import DEMO_RUNS, run_demo

__all__ = ('demo', 'render_timeline')

_OUTCOME_STYLE = {'completed': 'green', 'failed': 'red', 'interrupted': 'yellow', 'running': 'blue'}


def render_timeline(timeline: NodeTimeline, *, width: int = 40) -> Table:
    """A Rich table of a run: one row per node step with a bar placed and scaled on the run's time axis."""
    start = timeline.start
    end = timeline.end or max((n.end for n in timeline.nodes), default=start)
    total = max((end - start).total_seconds(), 1e-9)
    duration = format_duration(timeline.duration) if timeline.duration is not None else 'running'
    title = Text.assemble(
        (timeline.graph, 'bold'),
        '  ',
        (timeline.outcome, _OUTCOME_STYLE[timeline.outcome]),
        f'  {duration}  trace {timeline.trace_id or "-"}',
    )
    table = Table(title=title, title_justify='left', show_edge=False, box=None, pad_edge=False)
    table.add_column('#', justify='right', style='dim')
    table.add_column('node')
    table.add_column('timeline', no_wrap=True)
    table.add_column('duration', justify='right')
    table.add_column('next / error')
    for node in timeline.nodes:
        first = min(width - 1, int((node.start - start).total_seconds() / total * width))
        length = min(width - first, max(1, round(node.duration / total * width)))
        bar = Text(' ' * first + '█' * length + ' ' * (width - first - length), style=_OUTCOME_STYLE[node.outcome])
        detail = f'{node.error.type.rsplit(".", 1)[-1]}: {node.error.message}' if node.error else node.next_node or ''
        table.add_row(str(node.step), node.node_id, bar, format_duration(node.duration), detail)
    return table


def _reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(f'{url}/api/graphs', timeout=2):
            return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def demo(*, endpoint: str | None, once: bool, db: Path | None, port: int, console: Console) -> int:
    """Run the demo; returns the process exit code.

    Args:
        endpoint: a running dashboard (or any OTLP/HTTP endpoint) to send to; None starts the embedded one.
        once: exit after the runs are shown instead of serving until Ctrl-C.
        db: the embedded dashboard's DuckDB file (default: the user's data directory).
        port: the embedded dashboard's port (0: any free one; taken when the default is busy).
        console: where to print.
    """
    from ..dashboard.server import ServerThread
    from ..dashboard.store import default_db_path
    from ..exporters import configure

    server: ServerThread | None = None
    if endpoint is None:
        path = db or default_db_path()
        try:
            server = ServerThread(db=path, port=port).start()
        except OSError:
            console.print(f'[yellow]port {port} is busy[/]: serving the dashboard on a free port instead')
            server = ServerThread(db=path, port=0).start()
        endpoint = server.url
        console.print(f'dashboard store  {path}')
    elif not _reachable(endpoint):
        console.print(f'[yellow]warning:[/] {endpoint} does not answer like a tracegraph dashboard; sending anyway')

    telemetry = configure(service_name='tracegraph-demo', endpoint=endpoint)
    try:
        timelines: list[NodeTimeline] = []
        columns = (TextColumn('running example graphs'), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task('runs', total=DEMO_RUNS)
            timelines = asyncio.run(run_demo(lambda _: progress.advance(task)))
        telemetry.force_flush()
        for timeline in _showcase(timelines):
            console.print(render_timeline(timeline))
            console.print()
        failed = sum(t.outcome == 'failed' for t in timelines)
        steps = sum(len(t.nodes) for t in timelines)
        console.print(f'{len(timelines)} runs sent ({failed} failed on purpose), {steps} node steps')
        console.print(f'dashboard  [bold]{endpoint}[/]')
        if server is not None and not once:
            console.print('serving until Ctrl-C')
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                console.print('stopped')
        return 0
    finally:
        telemetry.shutdown()
        if server is not None:
            server.stop()


def _showcase(timelines: list[NodeTimeline]) -> list[NodeTimeline]:
    """One run of each graph, plus the first failed run: enough to read in a terminal."""
    shown: dict[str, NodeTimeline] = {}
    for timeline in timelines:
        shown.setdefault(timeline.graph, timeline)
    failed = next((t for t in timelines if t.outcome == 'failed'), None)
    return [*shown.values(), *([failed] if failed and failed not in shown.values() else [])]
