"""The dashboard's optional token: who may send spans, call the API and open pages.

Scripts and exporters send `Authorization: Bearer TOKEN` with every request. Browsers cannot add a header to a
page load, so they sign in once with the token through `/login` and get a session cookie: a random session id
that this process remembers (never the token itself), valid for `SESSION_SECONDS`, `HttpOnly`, `SameSite=Strict`
and `Secure` when served over TLS. `/logout` forgets the session. Sessions live in memory: a restart signs everyone
out.

Wrong tokens are counted per client address; after `MAX_FAILURES` within `FAILURE_WINDOW` seconds that address is
answered 429 (with `Retry-After`) on every attempt that would check a token — the form and bearer headers alike,
right tokens included, so guessing gains nothing — until the window has passed. Sessions already signed in keep
working.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from html import escape
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .markup import layout
from .receiver import error_response

__all__ = (
    'SESSION_COOKIE',
    'SESSION_SECONDS',
    'MAX_FAILURES',
    'FAILURE_WINDOW',
    'AUTH_MESSAGE',
    'check_token',
    'TokenAuth',
)

SESSION_COOKIE = 'tracegraph_session'
SESSION_SECONDS = 12 * 3600
MAX_FAILURES = 10
FAILURE_WINDOW = 60.0
MAX_SESSIONS = 1024
"""Sessions remembered at once; signing in beyond it ends the oldest."""
AUTH_MESSAGE = 'Missing or wrong bearer token: send Authorization: Bearer TOKEN.'
_PUBLIC = ('/healthz', '/login', '/static/', '/favicon.ico')


def check_token(token: str | None) -> str | None:
    """`token` when it can guard the server, None for no auth.

    Raises:
        ValueError: the token is empty or only whitespace, which would let an empty cookie or login through.
    """
    if token is not None and not token.strip():
        raise ValueError(
            'The token is empty: give a non-empty --token (or TRACEGRAPH_TOKEN), or unset it to serve without auth.'
        )
    return token


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


@dataclass
class _Failures:
    """Wrong tokens per client address in the last `FAILURE_WINDOW` seconds."""

    _times: dict[str, deque[float]] = field(default_factory=dict[str, deque[float]])
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._times.setdefault(client, deque())
        while times and times[0] <= now - FAILURE_WINDOW:
            times.popleft()
        return times

    def retry_after(self, client: str) -> int:
        """Seconds until `client` may try a token again; 0 when it may now."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(client, now)
            if len(times) < MAX_FAILURES:
                return 0
            return max(1, int(times[-MAX_FAILURES] + FAILURE_WINDOW - now + 0.999))

    def add(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(client, now).append(now)
            if len(self._times) > 10_000:  # forget quiet clients rather than grow without bound
                for key in [k for k, v in self._times.items() if not v]:
                    del self._times[key]

    def clear(self, client: str) -> None:
        with self._lock:
            self._times.pop(client, None)


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
    _failures: _Failures = field(default_factory=_Failures)

    def _token_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope['type'] != 'http':
            await self.app(scope, receive, send)
            return
        path: str = scope.get('path', '')
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
        wait = self._failures.retry_after(client)
        if not wait and auth[:7].lower() == 'bearer ':
            if self._token_ok(auth[7:].strip()):
                return None
            self._failures.add(client)
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
        wait = self._failures.retry_after(client)
        if wait:
            response = _login_page(next_path, status=429, error=f'Too many wrong tokens: try again in {wait} s.')
            response.headers['Retry-After'] = str(wait)
            return response
        if not self._token_ok(given):
            self._failures.add(client)
            return _login_page(next_path, status=401, error='Wrong token.')
        self._failures.clear(client)
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
