"""Send one serialized OTLP `ExportTraceServiceRequest` over HTTP or gRPC and classify the answer.

The gRPC sender lives in `grpc_sender.py`, imported only for `protocol='grpc'`: grpcio is the `grpc` extra.

The spool needs what the SDK's exporters hide: the status, `Retry-After`, and whether a failure is worth
retrying. Everything but a malformed request (`400` / `INVALID_ARGUMENT`) or one too large (`413`) is
retried: the data is safe on disk, and an expired token or a wrong path can be fixed by a restart.
"""

from __future__ import annotations

import http.client
import ssl
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from ..settings import GRPC_FEATURE, OtlpTarget, require_extra
from .send_result import Sender, SendResult, rejected_spans

__all__ = ('HttpSender', 'make_sender', 'parse_retry_after')

_PERMANENT_HTTP = frozenset({400, 413})


def make_sender(target: OtlpTarget, *, timeout: float) -> Sender:
    """The sender for `target`'s protocol."""
    if target.protocol == 'grpc':
        require_extra('grpc', GRPC_FEATURE, modules=('grpc',))
        from .grpc_sender import GrpcSender  # grpcio comes with the `grpc` extra only

        return GrpcSender(target, timeout=timeout)
    return HttpSender(target, timeout=timeout)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


class HttpSender:
    """OTLP/HTTP with protobuf bodies over one persistent `http.client` connection."""

    def __init__(self, target: OtlpTarget, *, timeout: float) -> None:
        parts = urlsplit(target.endpoint)
        self._https = parts.scheme == 'https'
        self._host = parts.hostname or 'localhost'
        self._port = parts.port or (443 if self._https else 80)
        self._path = (parts.path or '/') + (f'?{parts.query}' if parts.query else '')
        self._headers = {**target.headers, 'Content-Type': 'application/x-protobuf'}
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._https:
                ctx = ssl.create_default_context()
                self._conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=ctx)
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        return self._conn

    def send(self, payload: bytes) -> SendResult:
        """POST the request; 2xx is success, 400/413 are permanent, anything else (or no answer) is retried.

        A kept-alive connection the backend closed while idle fails the first request sent on it; that request is
        sent again at once on a new connection, without counting as a failure.
        """
        while True:
            reused = self._conn is not None
            try:
                conn = self._connection()
                conn.request('POST', self._path, body=payload, headers=self._headers)
                response = conn.getresponse()
                body = response.read()
                break
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected) as e:
                self.close()
                if reused:
                    continue  # a stale keep-alive connection: once more, on a fresh one
                return SendResult(outcome='retry', detail=f'{type(e).__name__}: {e}')
            except (OSError, http.client.HTTPException) as e:
                self.close()
                return SendResult(outcome='retry', detail=f'{type(e).__name__}: {e}')
        status = response.status
        if 200 <= status < 300:
            rejected, message = rejected_spans(body)
            return SendResult(outcome='ok', detail=message or str(status), rejected_spans=rejected)
        detail = f'HTTP {status} {response.reason}'
        if status in _PERMANENT_HTTP:
            return SendResult(outcome='drop', detail=detail)
        retry_after = parse_retry_after(response.getheader('Retry-After'))
        return SendResult(outcome='retry', detail=detail, retry_after=retry_after)

    def close(self) -> None:
        """Close the connection; the next send opens a new one."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
