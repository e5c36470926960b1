"""The OTLP/HTTP receiver: `POST /v1/traces` and `POST /v1/metrics`.

Order of checks: media type (415), size (413), encoding and body (400); a batch is answered 200 only once
it is committed, and a failure to store it is a 503 the exporter retries.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.requests import Request
from starlette.responses import Response

from ..store.database import Store
from .decodepool import DecodePool
from .otlp import JSON, PROTOBUF, OtlpError, decompress, media_type, parse_metrics, read_or_400

__all__ = ('DEFAULT_MAX_BODY', 'Receiver', 'error_response')

DEFAULT_MAX_BODY = 16 * 1024 * 1024
"""Largest request body accepted, compressed or not (bytes)."""

_GRPC_CODES = {400: 3, 401: 16, 413: 8, 415: 3, 503: 14}
logger = logging.getLogger('tracegraph.dashboard')


def error_response(status: int, message: str, media: str | None) -> Response:
    """An OTLP error reply: a `google.rpc.Status` in the request's encoding (JSON when unknown)."""
    code = _GRPC_CODES.get(status, 2)
    if media == PROTOBUF:
        body = Status(code=code, message=message).SerializeToString()
        return Response(body, status_code=status, media_type=PROTOBUF)
    return Response(json.dumps({'code': code, 'message': message}), status_code=status, media_type=JSON)


_Ingest = Callable[[bytes, str], Awaitable[tuple[bytes, dict[str, Any]]]]


@dataclass(kw_only=True)
class Receiver:
    """Endpoints that store OTLP requests in `store`, decoding span requests with `pool`."""

    store: Store
    pool: DecodePool = field(default_factory=lambda: DecodePool(workers=0))
    max_body: int = DEFAULT_MAX_BODY

    async def _body(self, request: Request) -> bytes:
        length = request.headers.get('content-length')
        if length is not None and length.isdigit() and int(length) > self.max_body:
            raise OtlpError(413, f'Request body is larger than {self.max_body} bytes.')
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise OtlpError(413, f'Request body is larger than {self.max_body} bytes.')
            chunks.append(chunk)
        return b''.join(chunks)

    async def _handle(self, request: Request, ingest: _Ingest) -> Response:
        media: str | None = None
        try:
            media = media_type(request.headers.get('content-type'))
            body = decompress(await self._body(request), request.headers.get('content-encoding'), limit=self.max_body)
            proto_reply, json_reply = await ingest(body, media)
        except OtlpError as exc:
            return error_response(exc.status, exc.message, media)
        except Exception as exc:  # the batch was not committed: 503 makes the exporter send it again
            logger.exception('could not store an OTLP batch')
            return error_response(503, f'Could not store the batch: {type(exc).__name__}: {exc}', media)
        if media == PROTOBUF:
            return Response(proto_reply, media_type=PROTOBUF)
        return Response(json.dumps(json_reply), media_type=JSON)

    async def ingest_traces(self, body: bytes, media: str) -> tuple[bytes, dict[str, Any]]:
        """Decode and store a trace request body; the reply, in protobuf and as OTLP/JSON (see `otlp`)."""
        batch = await self.pool.traces(body, media)
        await anyio.to_thread.run_sync(self.store.insert_spans, batch)
        reply = ExportTraceServiceResponse()
        json_reply: dict[str, Any] = {}
        if batch.rejected:
            reply.partial_success.rejected_spans = batch.rejected
            reply.partial_success.error_message = batch.error_message
            json_reply = {'partialSuccess': {'rejectedSpans': str(batch.rejected), 'errorMessage': batch.error_message}}
        return reply.SerializeToString(), json_reply

    async def ingest_metrics(self, body: bytes, media: str) -> tuple[bytes, dict[str, Any]]:
        """Decode and store a metrics request body; the reply, in protobuf and as OTLP/JSON."""
        batch = await anyio.to_thread.run_sync(read_or_400, parse_metrics, body, media)
        await anyio.to_thread.run_sync(self.store.insert_metrics, batch)
        return ExportMetricsServiceResponse().SerializeToString(), {}

    async def traces(self, request: Request) -> Response:
        """`POST /v1/traces`."""
        return await self._handle(request, self.ingest_traces)

    async def metrics(self, request: Request) -> Response:
        """`POST /v1/metrics`."""
        return await self._handle(request, self.ingest_metrics)
