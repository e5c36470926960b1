"""OTLP/gRPC for the spool and the export process: one generic unary call with the already serialized request.

Imported by `senders.make_sender` only for `protocol='grpc'`, because grpcio is in the `grpc` extra alone.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import grpc

from ..settings import OtlpTarget
from .send_result import SendResult, rejected_spans

__all__ = ('GrpcSender',)

_TRACE_METHOD = '/opentelemetry.proto.collector.trace.v1.TraceService/Export'
_PERMANENT_GRPC = frozenset({grpc.StatusCode.INVALID_ARGUMENT})


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
        rejected, message = rejected_spans(body if isinstance(body, bytes) else b'')
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
