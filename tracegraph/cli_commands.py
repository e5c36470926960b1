"""The `tracegraph` commands: `serve` (the local dashboard), `demo` (example graphs shown there), `report`.

Started through `cli.main`, which first checks that the `dashboard` extra is installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

__all__ = ('app',)

app = typer.Typer(
    name='tracegraph',
    help='Typed async graphs whose every run is observable: a local dashboard for their traces.',
    no_args_is_help=True,
    add_completion=True,
)
_err = Console(stderr=True, soft_wrap=True)  # an error is one line, however narrow the terminal
_out = Console()


def _fail(message: str) -> NoReturn:
    """A bad option or input: one line on standard error, exit code 2 (a usage error, as click's own)."""
    _err.print(f'[bold red]error:[/] {message}')
    raise typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        from ._version import __version__

        _out.print(f'tracegraph {__version__}')
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option('--version', callback=_version, is_eager=True, help='Print the version and exit.')
    ] = False,
) -> None:
    """Typed async graphs whose every run is observable: a local dashboard for their traces."""


def _warn_about_exposure(host: str, token: str | None) -> None:
    from .dashboard.auth import MIN_TOKEN_LENGTH
    from .dashboard.server.server import is_loopback

    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        _err.print(
            f'[bold yellow]warning:[/] the token has {len(token)} characters: use at least {MIN_TOKEN_LENGTH} random '
            "ones (python -c 'import secrets; print(secrets.token_urlsafe(24))'); wrong tokens are limited per "
            'address, but that cannot stop a guesser who sends many at once.'
        )
    if not is_loopback(host) and token is None:
        _err.print(
            f'[bold yellow]warning:[/] binding {host} without --token: anyone who can reach this port '
            'can send spans and read your traces.'
        )


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
    decode_workers: Annotated[
        int | None,
        typer.Option(min=0, help='Processes decoding span requests (default: one per core beyond the first).'),
    ] = None,
    log_level: Annotated[str, typer.Option(help='uvicorn log level.')] = 'warning',
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help='Another Host name to answer for, besides loopback names and IP addresses (repeatable; * for any).'
        ),
    ] = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help='Comma-separated proxies (addresses, networks, *) whose X-Forwarded-For is believed; none by default.'
        ),
    ] = None,
    grpc_port: Annotated[
        int, typer.Option(help='Port for OTLP/gRPC ingest (what most SDKs and the zero-code agent send to by default).')
    ] = 4317,
    no_grpc: Annotated[bool, typer.Option('--no-grpc', help='Receive OTLP over HTTP only.')] = False,
    stale_after: Annotated[
        float,
        typer.Option(min=1.0, help='Seconds without a new node span after which an unfinished run is shown stale.'),
    ] = 600.0,
) -> None:
    """Run the local dashboard: an OTLP/HTTP receiver (POST /v1/traces, /v1/metrics), a DuckDB store and a web UI."""
    from .dashboard.auth import check_token
    from .dashboard.ingest.grpcreceiver import GrpcReceiver
    from .dashboard.server.app import ServeOptions
    from .dashboard.server.connections import raise_descriptor_limit
    from .dashboard.server.server import bind_socket, default_decode_workers, free_grpc_port, make_server
    from .dashboard.store.database import Store, StoreError, default_db_path
    from .dashboard.store.serving import announce
    from .exporters.settings import http_url

    if token is None and 'TRACEGRAPH_TOKEN' in os.environ:
        token = os.environ['TRACEGRAPH_TOKEN']  # click reads a variable set empty as unset: it must be refused
    try:
        check_token(token)
    except ValueError as exc:
        _fail(str(exc))
    _warn_about_exposure(host, token)
    # What the server creates (the store, its WAL, the address file) is readable by this user alone.
    os.umask(os.umask(0o077) | 0o077)
    raise_descriptor_limit()
    path = db or default_db_path()
    if not 0 <= port <= 65535:
        _fail(f'--port must be from 0 to 65535 (0 picks a free port), got {port}')
    if not no_grpc and not 0 <= grpc_port <= 65535:
        _fail(f'--grpc-port must be from 0 to 65535 (0 picks a free port), got {grpc_port}')
    try:
        store = Store(path)
    except StoreError as exc:
        _fail(str(exc))
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        _err.print(f'[bold red]error:[/] cannot listen on {host}:{port}: {exc.strerror or exc}')
        store.close()
        raise typer.Exit(1) from None
    url = http_url(host, sock.getsockname()[1])
    grpc = None
    if not no_grpc:
        grpc_port = grpc_port or free_grpc_port(host)
        try:
            bind_socket(host, grpc_port).close()  # said now, in one line, rather than from inside the server
        except OSError as exc:
            _err.print(
                f'[bold red]error:[/] cannot listen on {host}:{grpc_port} for OTLP/gRPC: {exc.strerror or exc} '
                '(pass --grpc-port PORT or --no-grpc)'
            )
            sock.close()
            store.close()
            raise typer.Exit(1) from None
        grpc = GrpcReceiver(host=host, port=grpc_port)
    _out.print(f'tracegraph dashboard  [bold]{url}[/]')
    _out.print(f'  store      {path}')
    _out.print(f'  ingest     OTLP/HTTP  OTEL_EXPORTER_OTLP_ENDPOINT={url}')
    if grpc is not None:
        grpc_url = http_url(host, grpc.port)
        _out.print(f'             OTLP/gRPC  OTEL_EXPORTER_OTLP_ENDPOINT={grpc_url} OTEL_EXPORTER_OTLP_PROTOCOL=grpc')
    if token is not None:
        _out.print('  auth       on: Authorization: Bearer <token>, or sign in at /login')
    else:
        _out.print('  auth       off: anyone who can reach the port can send spans and read them')
    if allowed_host:
        _out.print(f'  hosts      also answering for {", ".join(allowed_host)}')
    if retention_days is not None:
        _out.print(f'  retention  {retention_days:g} days')
    options = ServeOptions(
        token=token,
        retention_days=retention_days,
        max_body=int(max_body_mb * 1024 * 1024),
        decode_workers=default_decode_workers() if decode_workers is None else decode_workers,
        bind_host=host,
        allowed_hosts=allowed_host or (),
        forwarded_allow_ips=[a.strip() for a in (forwarded_allow_ips or '').split(',') if a.strip()],
        stale_after=stale_after,
        grpc=grpc,
    )
    server = make_server(store, options, log_level=log_level)
    # Rendering a big run is Python work in a worker thread; a 1 ms GIL switch interval (default 5 ms) lets the
    # event loop answer ingest and health between its slices (bench/serve_responsive.py: busy ingest p50 117 -> 31 ms).
    sys.setswitchinterval(0.001)
    try:
        with announce(path, url):  # `report`, `demo` and `Store` elsewhere find this server through it
            server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down cleanly
        pass
    finally:
        sock.close()
        store.close()


@app.command()
def demo(
    endpoint: Annotated[
        str | None,
        typer.Option(help='Send to this dashboard (or any OTLP/HTTP endpoint) instead of starting the embedded one.'),
    ] = None,
    once: Annotated[bool, typer.Option(help='Exit after printing the runs instead of serving until Ctrl-C.')] = False,
    db: Annotated[
        Path | None, typer.Option(help='DuckDB file of the embedded dashboard (default: the user data directory).')
    ] = None,
    port: Annotated[int, typer.Option(help='Port of the embedded dashboard (a free one when it is busy).')] = 4318,
) -> None:
    """Run example graphs (state machine, flaky fetch with retries, concurrent runs, agent loop) and show them."""
    from .demo.main import demo as run_demo

    raise typer.Exit(run_demo(endpoint=endpoint, once=once, db=db, port=port, console=_out))


dashboards_app = typer.Typer(help='The Grafana dashboards and Collector, Tempo and Prometheus files for production.')
app.add_typer(dashboards_app, name='dashboards')


def dashboards_source() -> Path:
    """Where the production dashboards are: inside the installed package, or at the root of a source checkout."""
    package = Path(__file__).resolve().parent
    installed = package / '_dashboards'
    return installed if installed.is_dir() else package.parent / 'dashboards'


@dashboards_app.command('export')
def dashboards_export(
    directory: Annotated[Path, typer.Argument(help='Where to write them (created; existing files are kept).')],
    force: Annotated[bool, typer.Option(help='Overwrite files that exist.')] = False,
) -> None:
    """Write the Grafana dashboards, Collector and Tempo configs and docker-compose file to DIRECTORY."""
    import shutil

    source = dashboards_source()
    if not source.is_dir():
        _fail(f'the dashboards are not in this install (looked in {source})')
    files = sorted(p for p in source.rglob('*') if p.is_file() and '__pycache__' not in p.parts)
    clashes = [p for p in files if (directory / p.relative_to(source)).exists()]
    if clashes and not force:
        shown = ', '.join(str(p.relative_to(source)) for p in clashes[:3]) + ('…' if len(clashes) > 3 else '')
        _fail(f'{directory} already holds {shown}: pass --force')
    for path in files:
        target = directory / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    _out.print(f'wrote {len(files)} files to {directory} (start with {directory / "README.md"})')


@app.command()
def report(
    db: Annotated[Path | None, typer.Option(help='Dashboard store to read (default: the one `serve` uses).')] = None,
    file: Annotated[
        Path | None, typer.Option(help='JSON Lines span file written by `configure(file=...)` to read instead.')
    ] = None,
    graph: Annotated[str | None, typer.Option(help='Only this graph.')] = None,
    since: Annotated[
        str | None, typer.Option(help='Only runs since then: an ISO time or a duration back from now (30m, 6h, 7d).')
    ] = None,
    slowest: Annotated[int, typer.Option(min=0, help='How many of the slowest runs to list per graph.')] = 5,
    json_output: Annotated[bool, typer.Option('--json', help='The same as --format json.')] = False,
    output_format: Annotated[
        str,
        typer.Option(
            '--format', help='table (default), json (the whole report), csv or parquet (one row per graph and node).'
        ),
    ] = 'table',
    output: Annotated[
        Path | None, typer.Option(help='Write to this file instead of standard output (needed for parquet).')
    ] = None,
) -> None:
    """Performance per graph and node: count, error rate, p50/p95/p99, share of run time, and the slowest runs."""
    from .dashboard.report import (
        ReportSource,
        build_report,
        load_span_file,
        render_report,
        report_csv,
        write_report,
    )
    from .dashboard.store.database import Store, StoreError, default_db_path
    from .dashboard.store.models import parse_since
    from .dashboard.store.remote import RemoteStore, RemoteStoreError
    from .dashboard.store.serving import serving_url

    store: ReportSource

    if db is not None and file is not None:
        _fail('give --db or --file, not both')
    try:
        since_at = parse_since(since) if since else None
    except ValueError as exc:
        _fail(f'--since: {exc}')
    if file is not None:
        if not file.is_file():
            _fail(f'no span file at {file}')
        try:
            store = load_span_file(file)
        except ValueError as exc:
            _fail(str(exc))
        source = str(file)
    else:
        path = db or default_db_path()
        if not path.is_file():
            _fail(f'no dashboard store at {path} (run `tracegraph serve` or pass --file)')
        try:
            store, source = Store(path), str(path)
        except StoreError as exc:
            url = serving_url(path)
            if url is None:
                _fail(str(exc))
            # the file is held by a running `serve`: its JSON API answers the same questions
            _err.print(f'the store {path} is open in `tracegraph serve`: reading it through {url}')
            store, source = RemoteStore(url, token=os.environ.get('TRACEGRAPH_TOKEN') or None), f'{path} via {url}'
    try:
        result = build_report(store, source=source, graph=graph, since=since_at, slowest=slowest)
    except RemoteStoreError as exc:
        _fail(str(exc))
    finally:
        store.close()
    fmt = 'json' if json_output else output_format
    if fmt not in ('table', 'json', 'csv', 'parquet'):
        _fail(f'--format must be table, json, csv or parquet, got {fmt!r}')
    if fmt == 'parquet' and output is None:
        _fail('--format parquet writes a file: pass --output FILE')
    if fmt == 'table':
        render_report(result, _out)
    elif output is not None:
        write_report(result, fmt, output)
        _out.print(f'wrote {output}')
    elif fmt == 'json':
        _out.print_json(result.model_dump_json())
    else:
        sys.stdout.write(report_csv(result))
