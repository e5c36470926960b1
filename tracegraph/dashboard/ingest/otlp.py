"""Decoding of OTLP/HTTP request bodies (protobuf or JSON, optionally gzip) into columnar batches.

The receiver turns one `ExportTraceServiceRequest` into one `SpanBatch`: a list per column, so the store
inserts the whole request with a single statement.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ...exporters.otlp.otlpjson import attributes_dict, message_from_json
from ...tracing import attributes as attr
from ..store.columns import SPAN_COLUMNS, MetricBatch, SpanBatch, arrow_table, dumps
from .metrics import metric_batch

__all__ = (
    'PROTOBUF',
    'JSON',
    'OtlpError',
    'decompress',
    'media_type',
    'parse_traces',
    'parse_metrics',
    'read_or_400',
    'span_batch',
    'INGEST_NOTE',
    'FUTURE_SLACK_NS',
)

PROTOBUF = 'application/x-protobuf'
JSON = 'application/json'
_STATUS_NAMES = ('UNSET', 'OK', 'ERROR')
_M = TypeVar('_M', bound=Message)


class OtlpError(Exception):
    """A request the receiver refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __reduce__(self) -> tuple[type[OtlpError], tuple[int, str]]:
        # raised in decode worker processes: it must survive pickling with both arguments
        return (OtlpError, (self.status, self.message))


def media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type header, or raise 415 when it is neither protobuf nor JSON."""
    bare = (content_type or '').split(';', 1)[0].strip().lower()
    if bare in (PROTOBUF, JSON):
        return bare
    shown = bare or '(none)'
    raise OtlpError(415, f'Unsupported media type {shown!r}: send application/x-protobuf or application/json.')


def decompress(body: bytes, encoding: str | None, *, limit: int) -> bytes:
    """Undo `Content-Encoding` (gzip or identity), refusing bodies that inflate past `limit` bytes."""
    enc = (encoding or 'identity').strip().lower()
    if enc == 'identity':
        return body
    if enc != 'gzip':
        raise OtlpError(415, f'Unsupported Content-Encoding {enc!r}: send gzip or identity.')
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
        if len(out) > limit or inflater.unconsumed_tail:
            raise OtlpError(413, f'Request body is larger than {limit} bytes once decompressed.')
        out += inflater.flush()
    except zlib.error as exc:
        raise OtlpError(400, f'Malformed gzip body: {exc}.') from None
    if not inflater.eof:
        raise OtlpError(400, 'Malformed gzip body: the stream is truncated.')
    return out


def parse_traces(body: bytes, media: str) -> SpanBatch:
    """Decode an `ExportTraceServiceRequest` body into a `SpanBatch`."""
    request = _parse(body, media, ExportTraceServiceRequest)
    return span_batch(request)


def parse_metrics(body: bytes, media: str) -> MetricBatch:
    """Decode an `ExportMetricsServiceRequest` body into a `MetricBatch`."""
    request = _parse(body, media, ExportMetricsServiceRequest)
    return metric_batch(request)


_B = TypeVar('_B')


def read_or_400(parse: Callable[[bytes, str], _B], body: bytes, media: str) -> _B:
    """`parse(body, media)`, with any failure reported as a 400 `OtlpError`.

    A body the decoder chokes on is the client's problem (400), never a storage failure (503, retried).
    """
    try:
        return parse(body, media)
    except OtlpError:
        raise
    except Exception as exc:
        raise OtlpError(400, f'Could not read the request: {type(exc).__name__}: {exc}') from None


def _parse(body: bytes, media: str, cls: type[_M]) -> _M:
    if media == PROTOBUF:
        try:
            return cls.FromString(body)
        except (DecodeError, RuntimeError, ValueError):
            raise OtlpError(400, f'Malformed protobuf body: it is not a valid {cls.__name__}.') from None
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OtlpError(400, f'Malformed JSON body: {exc}.') from None
    if not isinstance(data, dict):
        raise OtlpError(400, f'Malformed JSON body: expected an object holding a {cls.__name__}.')
    try:
        return message_from_json(data, cls)  # pyright: ignore[reportUnknownArgumentType]
    except (ValueError, TypeError, AttributeError) as exc:
        raise OtlpError(400, f'Invalid OTLP JSON: {exc}') from None


_INT32 = (-(2**31), 2**31 - 1)
_KINDS = range(6)
"""`SpanKind` values OTLP defines (UNSPECIFIED to CONSUMER)."""
FUTURE_SLACK_NS = 24 * 3600 * 10**9
"""A span may start or end at most this far (a day) ahead of the receiver's clock; later is taken as impossible."""
INGEST_NOTE = 'tracegraph.dashboard.ingest_note'
"""Attribute added to a stored span whose values were adjusted to be stored (the original values, and why)."""


def _int32_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int) and _INT32[0] <= value <= _INT32[1]:
        return value
    return None


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _span_times(start: int, end: int, now_ns: int, notes: list[str]) -> tuple[int, int]:
    """Start and end as stored: within (0, now + a day], end never before start; each change noted."""
    latest = now_ns + FUTURE_SLACK_NS
    if not 0 < start <= latest:
        notes.append(f'start_time_unix_nano {start} is impossible; stored as the time received')
        start = now_ns
    if end == 0:
        end = start
    elif end > latest:
        notes.append(f'end_time_unix_nano {end} is more than a day ahead; stored as the start time')
        end = start
    elif end < start:
        notes.append(f'end_time_unix_nano {end} is before the start; stored as the start time')
        end = start
    return start, end


def span_batch(request: ExportTraceServiceRequest, *, now_ns: int | None = None) -> SpanBatch:
    """Flatten a decoded request into an Arrow table of `SPAN_COLUMNS`.

    Spans without valid ids are rejected (counted for `partial_success`), repeats dropped. Every other span is
    stored: a value that does not fit its typed column (a step beyond 32 bits, an unknown span kind, an impossible
    timestamp) leaves that column empty or clamped, keeps its original in the JSON attributes, and is explained in
    the `INGEST_NOTE` attribute, so one odd span never fails the request.
    """
    now_ns = time.time_ns() if now_ns is None else now_ns
    cols: dict[str, list[Any]] = {n: [] for n, _ in SPAN_COLUMNS}
    trace_id, span_id, parent_id, name = cols['trace_id'], cols['span_id'], cols['parent_span_id'], cols['name']
    kind, start, end = cols['kind'], cols['start_ns'], cols['end_ns']
    status_code, status_message = cols['status_code'], cols['status_message']
    service, scope, graph, run_id = cols['service_name'], cols['scope_name'], cols['graph'], cols['run_id']
    node_id, step, steps, outcome = cols['node_id'], cols['step'], cols['steps'], cols['outcome']
    next_node, is_run = cols['next_node'], cols['is_run']
    attrs_col, events_col, resource_col = cols['attributes'], cols['events'], cols['resource']
    none_cols = (graph, run_id, node_id, step, steps, outcome, next_node)
    seen: set[tuple[bytes, bytes]] = set()
    rejected, errors = 0, list[str]()
    for rs in request.resource_spans:
        resource = attributes_dict(rs.resource.attributes)
        resource_json = dumps(resource)
        service_name = _str_or_none(resource.get('service.name'))
        for ss in rs.scope_spans:
            scope_name = ss.scope.name or None
            for span in ss.spans:
                tid, sid = span.trace_id, span.span_id
                if len(tid) != 16 or len(sid) != 8 or not any(tid) or not any(sid):
                    rejected += 1
                    errors.append(f'span {span.name[:100]!r} has an invalid trace or span id')
                    continue
                key = (tid, sid)
                if key in seen:
                    continue
                seen.add(key)
                a = attributes_dict(span.attributes)
                notes: list[str] = []
                status = span.status
                code = _STATUS_NAMES[status.code] if 0 <= status.code < 3 else 'UNSET'
                rid = a.get(attr.RUN_ID)
                nid = a.get(attr.NODE_ID)
                start_ns, end_ns = _span_times(span.start_time_unix_nano, span.end_time_unix_nano, now_ns, notes)
                if span.kind not in _KINDS:
                    notes.append(f'span kind {span.kind} is not an OTLP SpanKind; stored without a kind')
                trace_id.append(tid.hex())
                span_id.append(sid.hex())
                parent = span.parent_span_id
                parent_id.append(parent.hex() if len(parent) == 8 else None)
                name.append(span.name)
                kind.append(span.kind if span.kind in _KINDS else None)
                start.append(start_ns)
                end.append(end_ns)
                status_code.append(code)
                status_message.append(status.message or None)
                service.append(service_name)
                scope.append(scope_name)
                events = span.events
                events_col.append(
                    dumps(
                        [
                            {'name': e.name, 'time_ns': e.time_unix_nano, 'attributes': attributes_dict(e.attributes)}
                            for e in events
                        ]
                    )
                    if events
                    else None
                )
                resource_col.append(resource_json)
                if isinstance(rid, str):
                    run_span = nid is None
                    declared = a.get(attr.RUN_OUTCOME if run_span else attr.NODE_OUTCOME)
                    graph.append(_str_or_none(a.get(attr.GRAPH_NAME)))
                    run_id.append(rid)
                    node_id.append(None if run_span else str(nid))
                    step.append(_checked_int(a, attr.NODE_STEP, notes))
                    steps.append(_checked_int(a, attr.RUN_STEPS, notes) if run_span else None)
                    outcome.append(
                        declared if isinstance(declared, str) else ('failed' if code == 'ERROR' else 'completed')
                    )
                    next_node.append(_str_or_none(a.get(attr.NODE_NEXT)))
                    is_run.append(run_span)
                else:  # any other span: kept, with no graph columns
                    for col in none_cols:
                        col.append(None)
                    is_run.append(False)
                if notes:
                    a[INGEST_NOTE] = '; '.join(notes)
                attrs_col.append(dumps(a))
    return SpanBatch(table=arrow_table(cols, SPAN_COLUMNS), rejected=rejected, errors=errors)


def _checked_int(attributes: dict[str, Any], key: str, notes: list[str]) -> int | None:
    value = attributes.get(key)
    checked = _int32_or_none(value)
    if value is not None and checked is None:
        notes.append(f'{key} {str(value)[:40]!r} is not a 32-bit integer; kept in the attributes only')
    return checked
