"""`tracegraph demo`: serve the dashboard (or use a reachable one), run the example graphs against it, show them."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, cast

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..exporters.local.console import render_timeline
from ..exporters.providers import ProcessorHost
from ..tracing.timeline import NodeTimeline

if TYPE_CHECKING:
    from ..dashboard.server.server import ServerThread
from .runner import DEMO_RUNS, run_demo

__all__ = ('demo', 'demo_db_path')


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
        db: the embedded dashboard's DuckDB file (default: `demo.duckdb` in the user's data directory, beside and
            apart from the store of `tracegraph serve`, so example runs never mix with an app's).
        port: the embedded dashboard's port (0: any free one; taken when the default is busy).
        console: where to print.
    """
    from ..dashboard.server.server import ServerThread
    from ..dashboard.store.database import StoreError
    from ..dashboard.store.serving import serving_url
    from ..exporters import ConfigurationError, configure
    from ..exporters.settings import check_endpoint

    server: ServerThread | None = None
    if endpoint is None:
        path = db or demo_db_path()
        try:
            try:
                server = ServerThread(db=path, port=port).start()
            except OSError:
                console.print(f'[yellow]port {port} is busy[/]: serving the dashboard on a free port instead')
                server = ServerThread(db=path, port=0).start()
        except StoreError as exc:
            running = serving_url(path)
            if running is None:
                console.print(f'[bold red]error:[/] {exc}')
                return 2
            console.print(f'the store {path} is open in `tracegraph serve`: sending the runs to it at {running}')
            endpoint = running
        else:
            endpoint = server.url
            console.print(f'dashboard store  {path}')
    else:
        try:
            endpoint = check_endpoint(endpoint, '--endpoint')
        except ConfigurationError as exc:
            hint = f' (did you mean http://{endpoint}?)' if '://' not in endpoint else ''
            console.print(f'[bold red]error:[/] {exc}{hint}')
            return 2
        if not _reachable(endpoint):
            console.print(f'[yellow]warning:[/] {endpoint} does not answer like a tracegraph dashboard; sending anyway')

    telemetry = configure(service_name='tracegraph-demo', endpoint=endpoint)
    ended = _SpanCount()
    cast(ProcessorHost, telemetry.tracer_provider).add_span_processor(ended)
    try:
        timelines: list[NodeTimeline] = []
        columns = (TextColumn('running example graphs'), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task('runs', total=DEMO_RUNS)
            timelines = asyncio.run(run_demo(lambda _: progress.advance(task)))
        telemetry.force_flush()
        lost = sum(telemetry.dropped_spans.values())
        delivered = ended.count - lost
        for timeline in _showcase(timelines):
            console.print(render_timeline(timeline, width=16, trace=True))
            console.print()
        failed = sum(t.outcome == 'failed' for t in timelines)
        steps = sum(len(t.nodes) for t in timelines)
        console.print(f'{len(timelines)} runs ({failed} failed on purpose), {steps} node steps')
        if lost:
            console.print(
                f'[bold red]{delivered} of {ended.count} spans delivered[/] to {endpoint}; {lost} were not '
                f'({", ".join(f"{n} {reason}" for reason, n in telemetry.dropped_spans.items())}): is it up, '
                'and does it want a token?'
            )
            if delivered == 0:
                return 1
        else:
            console.print(f'{ended.count} spans delivered')
        _what_next(console, server, endpoint, once=once)
        return 0
    finally:
        telemetry.shutdown()
        if server is not None:
            server.stop()


def demo_db_path() -> Path:
    """Where the demo's embedded dashboard keeps its runs: `demo.duckdb` beside `tracegraph serve`'s store."""
    from ..dashboard.store.database import default_db_path

    return default_db_path().with_name('demo.duckdb')


def _what_next(console: Console, server: ServerThread | None, endpoint: str, *, once: bool) -> None:
    """Say where the runs are and what to do next; serve the embedded dashboard until Ctrl-C unless `once`."""
    if server is None:
        console.print(f'dashboard  [bold]{endpoint}[/]')
    elif once:
        # The embedded dashboard stops with this process: name where the runs are, not a URL about to die.
        console.print(f'the runs are stored in {server.db}')
        console.print(f'next: [bold]tracegraph serve --db {server.db}[/] to open them in the dashboard')
    else:
        console.print(f'dashboard  [bold]{endpoint}[/]')
        console.print(
            'next: open it; to see your own graph there, run `tracegraph serve` and call '
            '`tracegraph.exporters.configure()` in your app'
        )
        console.print('serving until Ctrl-C')
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            console.print('stopped')


class _SpanCount(SpanProcessor):
    """Counts the spans that ended, to tell how many of them were delivered."""

    def __init__(self) -> None:
        self.count = 0

    def on_end(self, span: ReadableSpan) -> None:
        self.count += 1


def _showcase(timelines: list[NodeTimeline]) -> list[NodeTimeline]:
    """One run of each graph, plus the first failed run: enough to read in a terminal."""
    shown: dict[str, NodeTimeline] = {}
    for timeline in timelines:
        shown.setdefault(timeline.graph, timeline)
    failed = next((t for t in timelines if t.outcome == 'failed'), None)
    return [*shown.values(), *([failed] if failed and failed not in shown.values() else [])]
