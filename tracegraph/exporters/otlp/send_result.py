"""What a sender answers (`SendResult`), what every sender offers (`Sender`), and the OTLP partial-success count
that the HTTP and the gRPC sender both read from a successful answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

__all__ = ('SendResult', 'Sender', 'rejected_spans')


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


def rejected_spans(body: bytes) -> tuple[int, str]:
    """Spans refused and the backend's message, from an OTLP answer body (0 and '' when it is not one)."""
    try:
        response = ExportTraceServiceResponse.FromString(body)
    except Exception:
        return 0, ''
    partial = response.partial_success
    return partial.rejected_spans, partial.error_message
