"""The dashboard's Starlette application: OTLP receiver, JSON API and UI on one port, behind an optional token."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from ..auth import WrongTokens, check_token
from ..ingest.decodepool import DecodePool
from ..ingest.grpcreceiver import GrpcReceiver
from ..ingest.receiver import DEFAULT_MAX_BODY, Receiver
from ..store.database import Store
from ..web.api import Api, ApiError, Readers
from ..web.markup import layout
from ..web.pages import Pages
from .guards import HostGuard, SecurityHeaders
from .signin import TokenAuth

__all__ = ('RETENTION_INTERVAL', 'ServeOptions', 'create_app')

RETENTION_INTERVAL = 3600.0
"""Seconds between two retention passes while serving."""
logger = logging.getLogger('tracegraph.dashboard')
_STATIC = Path(__file__).parent.parent / 'web' / 'static'
_FAVICON = (_STATIC / 'favicon.svg').read_bytes()


@dataclass(kw_only=True)
class ServeOptions:
    """How a dashboard app serves its store: one group for `create_app`, `make_server`, `ServerThread` and the CLI."""

    token: str | None = None
    """When set, every request but `/healthz`, `/login` and static files needs it (see `auth`); empty is refused."""
    max_body: int = DEFAULT_MAX_BODY
    """Largest request body accepted (bytes, before and after gzip); larger gets 413."""
    retention_days: float | None = None
    """When set, spans older than this are deleted at start and every hour."""
    decode_workers: int = 0
    """Processes decoding large span requests (0: decode in threads of this process)."""
    bind_host: str = '127.0.0.1'
    """The address the server listens on; its name is one the Host check accepts (see `guards`)."""
    allowed_hosts: Sequence[str] = ()
    """More Host names to answer for (`*`: any)."""
    forwarded_allow_ips: Sequence[str] = ()
    """Proxies (addresses, networks, or `*`) whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed; none by
    default, so a request's address is its connection's peer (what the wrong-token limit counts)."""
    stale_after: float = 600.0
    """Seconds after its last node span ended at which a run without its run span is stale."""
    grpc: GrpcReceiver | None = None
    """An OTLP/gRPC receiver served alongside, started and stopped with the app (`bound_port` set once it listens)."""


def create_app(store: Store, options: ServeOptions | None = None) -> ASGIApp:
    """The ASGI app serving `store` as `options` say.

    Raises:
        ValueError: the token is empty.
    """
    o = options or ServeOptions()
    token, grpc, retention_days = o.token, o.grpc, o.retention_days
    token = check_token(token)
    wrong_tokens = WrongTokens()
    pool = DecodePool(workers=o.decode_workers)
    receiver = Receiver(store=store, pool=pool, max_body=o.max_body)
    if grpc is not None:
        grpc.receiver, grpc.token, grpc.wrong_tokens = receiver, token, wrong_tokens
    readers = Readers()
    api = Api(store=store, readers=readers, stale_after=o.stale_after)
    pages = Pages(store=store, readers=readers, sign_out=token is not None, stale_after=o.stale_after)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse('ok')

    async def favicon(request: Request) -> Response:
        return Response(_FAVICON, media_type='image/svg+xml', headers={'Cache-Control': 'max-age=86400'})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncGenerator[None]:
        await anyio.to_thread.run_sync(pool.start)
        try:
            if grpc is not None:
                await grpc.start()
            async with anyio.create_task_group() as tg:
                if retention_days is not None:
                    tg.start_soon(_retention_loop, store, retention_days)
                yield
                tg.cancel_scope.cancel()
        finally:
            if grpc is not None:
                await grpc.stop()
            await anyio.to_thread.run_sync(pool.close)

    routes = [
        Route('/v1/traces', receiver.traces, methods=['POST']),
        Route('/v1/metrics', receiver.metrics, methods=['POST']),
        Route('/api/runs', api.runs),
        Route('/api/runs/{trace_id}', api.run),
        Route('/api/runs/{trace_id}/steps.csv', api.run_steps),
        Route('/api/runs/{trace_id}/state', api.run_state),
        Route('/api/traces/{trace_id}', api.trace),
        Route('/api/traces/{trace_id}/spans/{span_id}', api.span),
        Route('/api/graphs', api.graphs),
        Route('/api/graphs/{graph:path}/nodes', api.nodes),
        Route('/api/graphs/{graph:path}/edges', api.edges),
        Route('/api/graphs/{graph:path}/timeseries', api.timeseries),
        Route('/api/graphs/{graph:path}/totals', api.totals),
        Route('/', pages.runs),
        Route('/runs/{trace_id}', pages.run),
        Route('/traces/{trace_id}', pages.trace),
        Route('/compare', pages.compare),
        Route('/graphs/{graph:path}/nodes/{node:path}', pages.node),
        Route('/graphs/{graph:path}', pages.graph),
        Route('/healthz', healthz),
        Route('/favicon.ico', favicon),
        Mount('/static', StaticFiles(directory=_STATIC), name='static'),
    ]
    app: ASGIApp = Starlette(routes=routes, lifespan=lifespan, exception_handlers={ApiError: _error_reply})
    if token is not None:
        app = TokenAuth(app=app, token=token, wrong_tokens=wrong_tokens)
    return SecurityHeaders(app=HostGuard(app=app, bind_host=o.bind_host, allowed=o.allowed_hosts))


async def _error_reply(request: Request, exc: Exception) -> Response:
    """An `ApiError` as JSON `{"detail": ...}` on the API, as an HTML page everywhere else."""
    assert isinstance(exc, ApiError)
    if request.url.path.startswith('/api/'):
        return JSONResponse({'detail': exc.message}, status_code=exc.status)
    title = 'Not found' if exc.status == 404 else 'Bad request'
    hint = (
        '<p>The runs list shows what is stored: <a href="/">all runs</a>; its search box finds runs by id (or its '
        'first characters), graph, span name, error text or attribute.</p>'
        if exc.status == 404
        else '<p><a href="/">Back to the runs</a>.</p>'
    )
    body = f'<h1>{title}</h1><p class="error">{escape(exc.message)}</p>{hint}'
    return layout(title, body, status=exc.status)


async def _retention_loop(store: Store, days: float) -> None:
    while True:
        try:
            deleted = await anyio.to_thread.run_sync(lambda: store.apply_retention(days))
            if deleted:
                logger.info('retention: deleted %d spans older than %s days', deleted, days)
        except Exception:  # a failed pass is retried at the next interval; serving goes on
            logger.exception('retention pass failed')
        await anyio.sleep(RETENTION_INTERVAL)
