"""JSON Lines span files in the OTLP/JSON encoding: `JsonLinesSpanExporter` writes them, `read_spans` reads them.

Each line is one `ExportTraceServiceRequest` holding exactly one span, with its resource and scope, in the
OTLP/JSON mapping (camelCase field names, hex trace and span ids, integer enums, 64-bit integers as
strings) — the format of the OpenTelemetry Collector's `file` exporter and `otlpjsonfile` receiver, so the
files can be replayed into any Collector. A batch is appended with one `write()` on a file opened with
`O_APPEND`, so concurrent writers (threads or processes) never interleave inside a line.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ..otlp.otlpjson import attributes_dict, trace_request_from_json, trace_request_to_json
from ..settings import check_file
from .diskio import write_whole

__all__ = ('JsonLinesSpanExporter', 'read_spans', 'read_trace_requests', 'span_to_json_line')

logger = logging.getLogger('tracegraph.exporters.local.jsonlines')


def span_to_json_line(span: ReadableSpan) -> str:
    """One span as an OTLP/JSON `ExportTraceServiceRequest` on a single line (without the newline)."""
    return json.dumps(trace_request_to_json(encode_spans([span])), separators=(',', ':'), ensure_ascii=False)


class JsonLinesSpanExporter(SpanExporter):
    """Appends every finished span to a JSON Lines file, one OTLP/JSON line per span.

    Args:
        path: the file; created when missing, appended to otherwise.
        fsync: fsync after each batch, so lines survive a power loss and not only a crash of the process.
    """

    def __init__(self, path: str | PathLike[str], *, fsync: bool = False) -> None:
        self.path = check_file(path)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Append the batch as whole lines: a write that fails part-way (a full disk) is cut back, so the file never
        holds a torn line in its middle. Writers in several processes take turns through `flock`."""
        if self._closed:
            return SpanExportResult.FAILURE
        data = ''.join(span_to_json_line(s) + '\n' for s in spans).encode()
        with self._lock:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)  # spans are private: this user's alone
            except OSError as e:
                logger.error('tracegraph: cannot open %s to append %d spans: %s', self.path, len(spans), e)
                return SpanExportResult.FAILURE
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # the end of the file is ours until the lock goes with the fd
                write_whole(fd, data, os.fstat(fd).st_size, fsync=self.fsync)
            except OSError as e:
                logger.error('tracegraph: cannot append %d spans to %s: %s', len(spans), self.path, e)
                return SpanExportResult.FAILURE
            finally:
                os.close(fd)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Refuse further batches."""
        self._closed = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered: every export is written before it returns."""
        return True


def read_trace_requests(path: str | PathLike[str], *, strict: bool = False) -> Iterator[ExportTraceServiceRequest]:
    """The trace requests of a JSON Lines file of OTLP/JSON, one per line, in file order.

    A torn last line, left by a process killed while writing, is skipped with a warning; so is (unless `strict`)
    any other line that is not a trace request, with one warning naming how many and where.

    Raises:
        ValueError: with `strict`, for a line that is not an OTLP/JSON trace request, naming the file and line.
    """
    file = Path(path)
    text = file.read_text(encoding='utf-8', errors='replace')
    lines = text.split('\n')
    bad: list[int] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError('the line is not a JSON object')
            request = trace_request_from_json(data)  # pyright: ignore[reportUnknownArgumentType]
        except (ValueError, RecursionError) as e:
            if number == len(lines) and not text.endswith('\n'):
                logger.warning('tracegraph: skipping the torn last line %d of %s', number, file)
                break
            if strict:
                raise ValueError(f'{file}:{number}: not an OTLP/JSON trace request: {e}') from e
            bad.append(number)
            continue
        yield request
    if bad:
        shown = ', '.join(map(str, bad[:10])) + (', ...' if len(bad) > 10 else '')
        logger.warning(
            'tracegraph: skipped %d lines of %s that are not trace requests (lines %s)', len(bad), file, shown
        )


def read_spans(path: str | PathLike[str], *, strict: bool = False) -> list[ReadableSpan]:
    """Read a JSON Lines file of OTLP/JSON trace requests back into SDK `ReadableSpan`s.

    Lines may hold any number of spans (so files from the Collector's `file` exporter work too); damaged lines
    are handled as `read_trace_requests` says.

    Example:
        ```python
        from tracegraph import NodeTimeline
        from tracegraph.exporters import read_spans

        timelines = NodeTimeline.all_from_spans(read_spans('spans.jsonl'))
        ```

    Raises:
        ValueError: with `strict`, for a line that is not an OTLP/JSON trace request, naming the file and line.
    """
    return [span for request in read_trace_requests(path, strict=strict) for span in _spans_from_request(request)]


def _spans_from_request(request: ExportTraceServiceRequest) -> Iterator[ReadableSpan]:
    for resource_spans in request.resource_spans:
        resource = Resource(_attributes(resource_spans.resource.attributes), resource_spans.schema_url)
        for scope_spans in resource_spans.scope_spans:
            scope = InstrumentationScope(
                scope_spans.scope.name, scope_spans.scope.version or None, scope_spans.schema_url or None
            )
            for span in scope_spans.spans:
                yield _readable(span, resource, scope)


def _context(trace_id: bytes, span_id: bytes, flags: int) -> SpanContext:
    return SpanContext(int.from_bytes(trace_id, 'big'), int.from_bytes(span_id, 'big'), False, TraceFlags(flags & 0xFF))


def _readable(span: PbSpan, resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
    # bits 0-7 are the W3C trace flags, which the SDK's encoder leaves at 0; an exported span was sampled
    flags = span.flags & 0xFF or TraceFlags.SAMPLED
    parent = _context(span.trace_id, span.parent_span_id, flags) if span.parent_span_id else None
    return ReadableSpan(
        name=span.name,
        context=_context(span.trace_id, span.span_id, flags),
        parent=parent,
        resource=resource,
        attributes=_attributes(span.attributes),
        events=[Event(e.name, _attributes(e.attributes), e.time_unix_nano) for e in span.events],
        links=[
            Link(_context(link.trace_id, link.span_id, link.flags & 0xFF or flags), _attributes(link.attributes))
            for link in span.links
        ],
        kind=SpanKind(max(span.kind - 1, 0)),
        status=_status(span),
        start_time=span.start_time_unix_nano,
        end_time=span.end_time_unix_nano,
        instrumentation_scope=scope,
    )


def _status(span: PbSpan) -> Status:
    code = StatusCode(span.status.code)
    # the SDK accepts a description only with ERROR, and logs a warning otherwise
    return Status(code, span.status.message or None) if code is StatusCode.ERROR else Status(code)


def _attributes(items: Sequence[KeyValue]) -> dict[str, Any]:
    return {key: _sdk_value(value) for key, value in attributes_dict(items).items()}


def _sdk_value(value: Any) -> Any:
    """A decoded value as an SDK attribute holds it: sequences as tuples, maps as JSON text (the SDK has none)."""
    if isinstance(value, list):
        return tuple(_sdk_value(v) for v in value)  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    return value
