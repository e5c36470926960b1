"""The dashboard's token over HTTP: who may send spans, call the API and open pages.

Scripts and exporters send `Authorization: Bearer TOKEN` with every request. Browsers cannot add a header to a
page load, so they sign in once with the token through `/login` and get a session cookie: a random session id
that this process remembers (never the token itself), valid for `SESSION_SECONDS`, `HttpOnly`, `SameSite=Strict`
and `Secure` when served over TLS. `/logout` forgets the session. Sessions live in memory: a restart signs everyone
out.

Wrong tokens are counted by `dashboard/auth.py` (`WrongTokens`), shared with the gRPC port. The client address is
the connection's peer: proxy headers count only from the proxies the server was told to trust
(`--forwarded-allow-ips`).

Every reply to a path that needs the token carries `Cache-Control: no-store`, so no browser or proxy keeps it.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from html import escape
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..auth import AUTH_MESSAGE, WrongTokens
from ..ingest.receiver import error_response
from ..web.markup import layout

__all__ = ('SESSION_COOKIE', 'SESSION_SECONDS', 'TokenAuth')

SESSION_COOKIE = 'tracegraph_session'
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 1024
"""Sessions remembered at once; signing in beyond it ends the oldest."""
_PUBLIC = ('/healthz', '/login', '/static/', '/favicon.ico')


@dataclass
class _Sessions:
    """Session ids handed out by the login form, each with its expiry (monotonic seconds)."""

    _expiry: OrderedDict[str, float] = field(default_factory=OrderedDict[str, float])
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> str:
        session = secrets.token_urlsafe(32)
        with self._lock:
            self._expiry[session] = time.monotonic() + SESSION_SECONDS
            while len(self._expiry) > MAX_SESSIONS:
                self._expiry.popitem(last=False)
        return session

    def valid(self, session: str) -> bool:
        with self._lock:
            expiry = self._expiry.get(session)
            if expiry is not None and expiry < time.monotonic():
                del self._expiry[session]
                return False
            return expiry is not None

    def end(self, session: str) -> None:
        with self._lock:
            self._expiry.pop(session, None)


def _client(scope: Scope) -> str:
    client = scope.get('client')
    return str(client[0]) if client else '?'


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get('headers', []):
        if key == b'cookie':
            for part in value.decode('latin-1').split(';'):
                cookie, _, content = part.strip().partition('=')
                if cookie == name:
                    return content
    return None


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


def _no_store(send: Send) -> Send:
    """`send`, adding `Cache-Control: no-store` to the reply's headers (unless it sets its own)."""

    async def sending(message: Message) -> None:
        if message['type'] == 'http.response.start':
            headers = list(message.get('headers', []))
            if not any(k.lower() == b'cache-control' for k, _ in headers):
                headers.append((b'cache-control', b'no-store'))
            message = {**message, 'headers': headers}
        await send(message)

    return sending


def _safe_next(path: str) -> str:
    # only a path on this server: `//host` and `/\host` are other sites to a browser
    return path if path.startswith('/') and not path.startswith(('//', '/\\')) else '/'


@dataclass(kw_only=True)
class TokenAuth:
    """ASGI middleware: every path but the health check, login form, favicon and static files needs the token
    (a bearer header) or a session from the login form; it also serves `/login` and `/logout`."""

    app: ASGIApp
    token: str
    _sessions: _Sessions = field(default_factory=_Sessions)
    wrong_tokens: WrongTokens = field(default_factory=lambda: WrongTokens())
    """The wrong-token counts, shared with the OTLP/gRPC receiver."""

    def _token_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope['type'] != 'http':
            await self.app(scope, receive, send)
            return
        path: str = scope.get('path', '')
        if not path.startswith(_PUBLIC) or path == '/login':
            send = _no_store(send)
        if path == '/login':
            response = await self._login(Request(scope, receive))
        elif path == '/logout':
            response = self._logout(scope)
        elif path.startswith(_PUBLIC) or self._signed_in(scope):
            await self.app(scope, receive, send)
            return
        else:
            response = self._check_bearer(scope)
            if response is None:
                await self.app(scope, receive, send)
                return
        await response(scope, receive, send)

    def _signed_in(self, scope: Scope) -> bool:
        session = _cookie(scope, SESSION_COOKIE)
        return session is not None and self._sessions.valid(session)

    def _check_bearer(self, scope: Scope) -> Response | None:
        """None when the request carries the right bearer token, else the reply refusing it."""
        headers = {k.decode('latin-1').lower(): v.decode('latin-1') for k, v in scope.get('headers', [])}
        auth = headers.get('authorization', '')
        path: str = scope.get('path', '')
        client = _client(scope)
        given = auth[7:].strip() if auth[:7].lower() == 'bearer ' else None
        if given is not None and self._token_ok(given):
            return None
        if given is not None:
            self.wrong_tokens.add(client, given)
        wait = 0 if given is None else self.wrong_tokens.retry_after(client, given)
        status, message = (429, f'Too many wrong tokens from {client}: try again in {wait} s.') if wait else (401, '')
        message = message or AUTH_MESSAGE
        if path.startswith('/v1/'):
            media = headers.get('content-type', '').split(';')[0].strip().lower()
            response = error_response(status, message, media)
        elif path.startswith('/api/'):
            response = Response(f'{{"detail": "{message}"}}', status_code=status, media_type='application/json')
        else:
            query = scope.get('query_string', b'').decode('latin-1')
            response = _login_page(path + (f'?{query}' if query else ''), status=status, error=message if wait else '')
        if wait:
            response.headers['Retry-After'] = str(wait)
        else:
            response.headers['WWW-Authenticate'] = 'Bearer'
        return response

    async def _login(self, request: Request) -> Response:
        if request.method == 'GET':
            return _login_page(_safe_next(request.query_params.get('next', '/')))
        if request.method != 'POST':
            return Response('Method Not Allowed', status_code=405, headers={'Allow': 'GET, POST'})
        form = parse_qs((await request.body()).decode('utf-8', 'replace'))
        given = (form.get('token') or [''])[0]
        next_path = _safe_next((form.get('next') or ['/'])[0])
        client = _client(request.scope)
        if not self._token_ok(given):
            self.wrong_tokens.add(client, given)
            wait = self.wrong_tokens.retry_after(client, given)
            if wait:
                response = _login_page(next_path, status=429, error=f'Too many wrong tokens: try again in {wait} s.')
                response.headers['Retry-After'] = str(wait)
                return response
            return _login_page(next_path, status=401, error='Wrong token.')
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            self._sessions.start(),
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite='strict',
            secure=request.url.scheme == 'https',
        )
        return response

    def _logout(self, scope: Scope) -> Response:
        session = _cookie(scope, SESSION_COOKIE)
        if session is not None:
            self._sessions.end(session)
        response = RedirectResponse('/login', status_code=303)
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite='strict')
        return response
