"""The dashboard's token, shared by every port: checking it, and counting wrong ones.

The right token is always accepted, from any address, however many wrong ones came before: a guesser on the same
host cannot lock out a correctly configured exporter. Wrong tokens are counted per client address and per presented
token (a fingerprint of it; the token itself is not kept); an address that sent `MAX_FAILURES` wrong tokens within
`FAILURE_WINDOW` seconds, or a wrong token presented that often from anywhere, is answered 429 with `Retry-After`
(`RESOURCE_EXHAUSTED` on gRPC) instead of 401 until the window has passed, which tells a misconfigured client to back
off, and the log says so in one line per episode. This cannot slow down a guesser who sends requests in parallel
(the right token must get through at once), so the token must be one nobody can guess: `serve` warns about one
shorter than `MIN_TOKEN_LENGTH` characters. The HTTP side (bearer header, sign-in, sessions) is `server/signin.py`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

__all__ = ('AUTH_MESSAGE', 'FAILURE_WINDOW', 'MAX_FAILURES', 'MIN_TOKEN_LENGTH', 'WrongTokens', 'check_token')

MAX_FAILURES = 10
FAILURE_WINDOW = 60.0
MIN_TOKEN_LENGTH = 16
"""Below this many characters `serve` warns that the token could be guessed."""
AUTH_MESSAGE = 'Missing or wrong bearer token: send Authorization: Bearer TOKEN.'
_log = logging.getLogger('tracegraph.dashboard')


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
class WrongTokens:
    """Wrong tokens in the last `FAILURE_WINDOW` seconds, per client address and per presented token's fingerprint."""

    _times: dict[str, deque[float]] = field(default_factory=dict[str, deque[float]])
    _limited: set[str] = field(default_factory=set[str])
    """Keys over the limit now, so that an episode is logged once."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._times.setdefault(key, deque())
        while times and times[0] <= now - FAILURE_WINDOW:
            times.popleft()
        return times

    def _wait(self, key: str, now: float) -> int:
        times = self._recent(key, now)
        if len(times) < MAX_FAILURES:
            self._limited.discard(key)
            return 0
        return max(1, int(times[-MAX_FAILURES] + FAILURE_WINDOW - now + 0.999))

    def retry_after(self, client: str, given: str) -> int:
        """Seconds until `client`, or anyone presenting `given`, is answered 401 rather than 429 for a wrong token."""
        now = time.monotonic()
        with self._lock:
            return max(self._wait(f'addr {client}', now), self._wait(_fingerprint(given), now))

    def add(self, client: str, given: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (f'addr {client}', _fingerprint(given)):
                self._recent(key, now).append(now)
                if self._wait(key, now) and key not in self._limited:
                    self._limited.add(key)
                    what = f'from {client}' if key.startswith('addr ') else f'presenting one wrong token ({key})'
                    _log.warning(
                        'tracegraph serve: %d wrong tokens in %d s %s: answering 429 until they stop '
                        '(the right token is still accepted)',
                        MAX_FAILURES,
                        FAILURE_WINDOW,
                        what,
                    )
            if len(self._times) > 10_000:  # forget quiet keys rather than grow without bound
                for key in [k for k, v in self._times.items() if not v]:
                    del self._times[key]


def _fingerprint(given: str) -> str:
    return 'token ' + hashlib.sha256(given.encode()).hexdigest()[:12]
