"""The `tracegraph` command: `serve` (the local dashboard); `demo` and `report` are added beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ('app', 'main')

app = typer.Typer(
    name='tracegraph',
    help='Typed async graphs whose every run is observable: a local dashboard for their traces.',
    no_args_is_help=True,
    add_completion=False,
)
_err = Console(stderr=True)
_out = Console()


@app.callback()
def _root() -> None:
    """Typed async graphs whose every run is observable: a local dashboard for their traces."""


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help='Address to bind; anything but loopback exposes your traces.')
    ] = '127.0.0.1',
    port: Annotated[int, typer.Option(help='Port for OTLP/HTTP ingest, the JSON API and the UI.')] = 4318,
    db: Annotated[
        Path | None,
        typer.Option(help='DuckDB file to store spans in (default: $XDG_DATA_HOME/tracegraph/traces.duckdb).'),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(help='Require `Authorization: Bearer TOKEN` for ingest, API and UI.', envvar='TRACEGRAPH_TOKEN'),
    ] = None,
    retention_days: Annotated[
        float | None,
        typer.Option(min=0.0, help='Delete spans older than this many days (checked at start and hourly).'),
    ] = None,
    max_body_mb: Annotated[float, typer.Option(min=0.001, help='Largest request body accepted, in MiB.')] = 16.0,
    log_level: Annotated[str, typer.Option(help='uvicorn log level.')] = 'warning',
) -> None:
    """Run the local dashboard: an OTLP/HTTP receiver (POST /v1/traces, /v1/metrics), a DuckDB store and a web UI."""
    from .dashboard.server import bind_socket, is_loopback, make_server
    from .dashboard.store import Store, default_db_path

    path = db or default_db_path()
    if not is_loopback(host) and token is None:
        _err.print(
            f'[bold yellow]warning:[/] binding {host} without --token: anyone who can reach this port '
            'can send spans and read your traces.'
        )
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        _err.print(f'[bold red]error:[/] cannot listen on {host}:{port}: {exc.strerror or exc}')
        raise typer.Exit(1) from None
    store = Store(path)
    shown_host = f'[{host}]' if ':' in host else host
    url = f'http://{shown_host}:{sock.getsockname()[1]}'
    _out.print(f'tracegraph dashboard  [bold]{url}[/]')
    _out.print(f'  store      {path}')
    _out.print(f'  ingest     OTEL_EXPORTER_OTLP_ENDPOINT={url}')
    if token is not None:
        _out.print('  auth       Authorization: Bearer <token> required')
    if retention_days is not None:
        _out.print(f'  retention  {retention_days:g} days')
    server = make_server(
        store,
        token=token,
        retention_days=retention_days,
        max_body=int(max_body_mb * 1024 * 1024),
        log_level=log_level,
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        store.close()


# --- `tracegraph demo` and `tracegraph report` go here (issue 5). They reuse the dashboard's pieces:
# `tracegraph.dashboard.server.ServerThread` to serve in the background, and `tracegraph.dashboard.store.Store`
# (`runs`, `run`, `graphs`, `node_stats`, `edges`) for the numbers.


def main() -> None:
    """Entry point of the `tracegraph` script."""
    app()


if __name__ == '__main__':
    main()
