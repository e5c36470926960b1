"""The dashboard's Starlette application: OTLP receiver, JSON API and UI on one port, behind an optional token."""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from html import escape
from pathlib import Path
from urllib.parse import parse_qs

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from .api import Api, ApiError
from .decodepool import DecodePool
from .pages import Pages, layout
from .receiver import DEFAULT_MAX_BODY, Receiver, error_response
from .store import Store

__all__ = ('RETENTION_INTERVAL', 'TOKEN_COOKIE', 'create_app')

TOKEN_COOKIE = 'tracegraph_token'
RETENTION_INTERVAL = 3600.0
"""Seconds between two retention passes while serving."""
logger = logging.getLogger('tracegraph.dashboard')
_PUBLIC = ('/healthz', '/login', '/static/')


@dataclass(kw_only=True)
class _TokenGuard:
    """ASGI middleware: every path but the health check, login form and static files needs the token.

    The token comes as `Authorization: Bearer TOKEN` (exporters, scripts) or as the cookie set by the login
    form (browsers, which cannot add the header to a page load).
    """

    app: ASGIApp
    token: str

    def _allowed(self, scope: Scope) -> bool:
        headers = {k.decode('latin-1').lower(): v.decode('latin-1') for k, v in scope.get('headers', [])}
        auth = headers.get('authorization', '')
        if auth[:7].lower() == 'bearer ' and hmac.compare_digest(auth[7:].strip().encode(), self.token.encode()):
            return True
        for part in headers.get('cookie', '').split(';'):
            name, _, value = part.strip().partition('=')
            if name == TOKEN_COOKIE and hmac.compare_digest(value.encode(), self.token.encode()):
                return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get('path', '')
        if scope['type'] != 'http' or path.startswith(_PUBLIC) or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        message = 'Missing or wrong bearer token: send Authorization: Bearer TOKEN.'
        response: Response
        if path.startswith('/v1/'):
            headers = dict(scope.get('headers', []))
            media = headers.get(b'content-type', b'').decode('latin-1').split(';')[0].strip().lower()
            response = error_response(401, message, media)
        elif path.startswith('/api/'):
            response = Response(f'{{"detail": "{message}"}}', status_code=401, media_type='application/json')
        else:
            response = _login_page(path, status=401)
        response.headers['WWW-Authenticate'] = 'Bearer'
        await response(scope, receive, send)


def _login_page(next_path: str, *, status: int = 200, error: str = '') -> Response:
    note = f'<p class="error">{escape(error)}</p>' if error else ''
    form = (
        f'<h1>Sign in</h1>{note}<p>This dashboard was started with <code>--token</code>.</p>'
        '<form class="filters login" method="post" action="/login">'
        f'<input type="hidden" name="next" value="{escape(next_path)}">'
        '<label>Token <input name="token" type="password" autofocus></label><button type="submit">Sign in</button>'
        '</form>'
    )
    return layout('Sign in', form, status=status)


def create_app(
    store: Store,
    *,
    token: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    retention_days: float | None = None,
    decode_workers: int = 0,
) -> ASGIApp:
    """The ASGI app serving `store`.

    Args:
        store: where spans are written and read.
        token: when set, every request but `/healthz`, `/login` and static files needs it.
        max_body: largest request body accepted (bytes, before and after gzip); larger gets 413.
        retention_days: when set, spans older than this are deleted at start and every hour.
        decode_workers: processes decoding large span requests (0: decode in threads of this process).
    """
    pool = DecodePool(workers=decode_workers)
    receiver = Receiver(store=store, pool=pool, max_body=max_body)
    api = Api(store=store)
    pages = Pages(store=store)

    async def login(request: Request) -> Response:
        if request.method == 'GET':
            return _login_page(request.query_params.get('next', '/'))
        form = parse_qs((await request.body()).decode('utf-8', 'replace'))
        given = (form.get('token') or [''])[0]
        next_path = (form.get('next') or ['/'])[0]
        if not next_path.startswith('/') or next_path.startswith('//'):
            next_path = '/'
        if token is None or not hmac.compare_digest(given.encode(), token.encode()):
            return _login_page(next_path, status=401, error='Wrong token.')
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite='strict')
        return response

    async def healthz(request: Request) -> Response:
        return PlainTextResponse('ok')

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncGenerator[None]:
        await anyio.to_thread.run_sync(pool.start)
        try:
            async with anyio.create_task_group() as tg:
                if retention_days is not None:
                    tg.start_soon(_retention_loop, store, retention_days)
                yield
                tg.cancel_scope.cancel()
        finally:
            await anyio.to_thread.run_sync(pool.close)

    routes = [
        Route('/v1/traces', receiver.traces, methods=['POST']),
        Route('/v1/metrics', receiver.metrics, methods=['POST']),
        Route('/api/runs', api.runs),
        Route('/api/runs/{trace_id}', api.run),
        Route('/api/graphs', api.graphs),
        Route('/api/graphs/{graph:path}/nodes', api.nodes),
        Route('/api/graphs/{graph:path}/edges', api.edges),
        Route('/', pages.runs),
        Route('/runs/{trace_id}', pages.run),
        Route('/graphs/{graph:path}', pages.graph),
        Route('/login', login, methods=['GET', 'POST']),
        Route('/healthz', healthz),
        Mount('/static', StaticFiles(directory=Path(__file__).parent / 'static'), name='static'),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={ApiError: _error_reply})
    return app if token is None else _TokenGuard(app=app, token=token)


async def _error_reply(request: Request, exc: Exception) -> Response:
    """An `ApiError` as JSON `{"detail": ...}` on the API, as an HTML page everywhere else."""
    assert isinstance(exc, ApiError)
    if request.url.path.startswith('/api/'):
        return JSONResponse({'detail': exc.message}, status_code=exc.status)
    title = 'Not found' if exc.status == 404 else 'Bad request'
    return layout(title, f'<h1>{title}</h1><p class="error">{escape(exc.message)}</p>', status=exc.status)


async def _retention_loop(store: Store, days: float) -> None:
    while True:
        try:
            deleted = await anyio.to_thread.run_sync(lambda: store.apply_retention(days))
            if deleted:
                logger.info('retention: deleted %d spans older than %s days', deleted, days)
        except Exception:  # a failed pass is retried at the next interval; serving goes on
            logger.exception('retention pass failed')
        await anyio.sleep(RETENTION_INTERVAL)
