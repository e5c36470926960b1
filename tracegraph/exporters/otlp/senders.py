"""Send one serialized OTLP `ExportTraceServiceRequest` over HTTP or gRPC and classify the answer.

The spool needs what the SDK's exporters hide: the status, `Retry-After`, and whether a failure is worth
retrying. Everything but a malformed request (`400` / `INVALID_ARGUMENT`) or one too large (`413`) is
retried: the data is safe on disk, and an expired token or a wrong path can be fixed by a restart.
"""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from ..settings import OtlpTarget

__all__ = ('SendResult', 'Sender', 'HttpSender', 'GrpcSender', 'make_sender', 'parse_retry_after')

_TRACE_METHOD = '/opentelemetry.proto.collector.trace.v1.TraceService/Export'
_PERMANENT_HTTP = frozenset({400, 413})
_PERMANENT_GRPC = frozenset({grpc.StatusCode.INVALID_ARGUMENT})


@dataclass(frozen=True, kw_only=True)
class SendResult:
    """What became of one request."""

    outcome: Literal['ok', 'retry', 'drop']
    detail: str
    retry_after: float | None = None
    """Seconds the backend asked us to wait (HTTP `Retry-After`, gRPC `RetryInfo`)."""
    rejected_spans: int = 0
    """Spans the backend refused in an otherwise successful answer (OTLP partial success)."""


class Sender(Protocol):
    """Sends serialized trace requests to one backend."""

    def send(self, payload: bytes) -> SendResult:
        """Send one request; never raises for network or backend errors."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


def make_sender(target: OtlpTarget, *, timeout: float) -> Sender:
    """The sender for `target`'s protocol."""
    if target.protocol == 'grpc':
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


def _rejected(body: bytes) -> tuple[int, str]:
    try:
        response = ExportTraceServiceResponse.FromString(body)
    except Exception:
        return 0, ''
    partial = response.partial_success
    return partial.rejected_spans, partial.error_message


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
            rejected, message = _rejected(body)
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


class GrpcSender:
    """OTLP/gRPC through a generic unary call carrying the already serialized request."""

    def __init__(self, target: OtlpTarget, *, timeout: float) -> None:
        parts = urlsplit(target.endpoint)
        address = f'{parts.hostname}:{parts.port or (443 if parts.scheme == "https" else 4317)}'
        if parts.scheme == 'https':
            self._channel = grpc.secure_channel(address, grpc.ssl_channel_credentials())
        else:
            self._channel = grpc.insecure_channel(address)
        self._call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(_TRACE_METHOD)
        self._metadata = tuple(target.headers.items())
        self._timeout = timeout

    def send(self, payload: bytes) -> SendResult:
        """Call `TraceService/Export`; `INVALID_ARGUMENT` is permanent, every other error is retried."""
        try:
            body = self._call(payload, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            code: grpc.StatusCode = e.code()
            detail = f'gRPC {code.name}: {e.details()}'
            if code in _PERMANENT_GRPC:
                return SendResult(outcome='drop', detail=detail)
            return SendResult(outcome='retry', detail=detail, retry_after=_grpc_retry_delay(e))
        rejected, message = _rejected(body if isinstance(body, bytes) else b'')
        return SendResult(outcome='ok', detail=message or 'OK', rejected_spans=rejected)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()


def _grpc_retry_delay(error: grpc.RpcError) -> float | None:
    """The delay of a `google.rpc.RetryInfo` in the error's `grpc-status-details-bin` trailer, if any."""
    from google.rpc import error_details_pb2, status_pb2  # pyright: ignore[reportMissingTypeStubs]

    try:
        trailers: Any = error.trailing_metadata() or ()
        for key, value in trailers:
            if key == 'grpc-status-details-bin' and isinstance(value, bytes):
                status = status_pb2.Status.FromString(value)
                for detail in status.details:
                    if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):  # pyright: ignore[reportArgumentType]
                        info = error_details_pb2.RetryInfo()
                        detail.Unpack(info)
                        return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    except Exception:
        return None
    return None
