"""What every request and response of the dashboard passes through: the Host check and the security headers.

The Host check stops DNS rebinding: a page on another site whose name is made to resolve to 127.0.0.1 would
otherwise read and write the store through the visitor's browser. Only hosts that cannot be an attacker's name are
answered: IP literals, `localhost` (and `*.localhost`, which browsers resolve to loopback themselves), the name the
server was bound to and the names given with `--allowed-host` (`*` turns the check off, e.g. behind a proxy).
Anything else is answered 421 Misdirected Request before it reaches the app.

The security headers keep a page from running anything it did not load from this server: scripts only from
`/static/` (no inline script, no `eval`), nothing from another origin, no framing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from starlette.datastructures import MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ('CONTENT_SECURITY_POLICY', 'SECURITY_HEADERS', 'HostGuard', 'SecurityHeaders', 'host_name')

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""Inline `style` attributes stay allowed (bars and badges are coloured with them); inline script is not."""

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ('content-security-policy', CONTENT_SECURITY_POLICY),
    ('x-content-type-options', 'nosniff'),
    ('x-frame-options', 'DENY'),
    ('referrer-policy', 'no-referrer'),
    ('cross-origin-opener-policy', 'same-origin'),
    ('cross-origin-resource-policy', 'same-origin'),
)


def host_name(header: str) -> str:
    """The host of a `Host` header without its port, lower-case: `[::1]:4318` -> `::1`, `Example.COM.` ->
    `example.com`."""
    text = header.strip().lower()
    if text.startswith('['):
        return text[1:].split(']', 1)[0]
    if text.count(':') == 1:
        text = text.split(':', 1)[0]
    return text.rstrip('.')


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(kw_only=True)
class HostGuard:
    """ASGI middleware answering 421 to a request whose `Host` is not one this server answers for."""

    app: ASGIApp
    bind_host: str = '127.0.0.1'
    allowed: Iterable[str] = ()
    """Extra names to answer for; `*` answers any."""
    _names: frozenset[str] = field(init=False)
    _any: bool = field(init=False)

    def __post_init__(self) -> None:
        names = {host_name(n) for n in self.allowed}
        self._any = '*' in names
        self._names = frozenset({'localhost', host_name(self.bind_host), *names} - {'*'})

    def allows(self, host: str) -> bool:
        """Whether a request with this `Host` header is answered."""
        name = host_name(host)
        return self._any or name in self._names or name.endswith('.localhost') or _is_ip(name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope['type'] in ('http', 'websocket'):
            host = next((v.decode('latin-1') for k, v in scope.get('headers', []) if k == b'host'), None)
            if host is not None and not self.allows(host):
                shown = host if len(host) <= 100 else host[:100] + '…'
                response = PlainTextResponse(
                    f'Host {shown!r} is not one this server answers for (a guard against DNS rebinding). '
                    f'Open it through 127.0.0.1 or localhost, or start it with --allowed-host {host_name(shown)}.',
                    status_code=421,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


@dataclass(kw_only=True)
class SecurityHeaders:
    """ASGI middleware adding `SECURITY_HEADERS` to every HTTP response."""

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope['type'] != 'http':
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message['type'] == 'http.response.start':
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
