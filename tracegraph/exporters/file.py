"""JSON Lines span files in the OTLP/JSON encoding: `JsonLinesSpanExporter` writes them, `read_spans` reads them.

Each line is one `ExportTraceServiceRequest` holding exactly one span, with its resource and scope, in the
OTLP/JSON mapping (camelCase field names, hex trace and span ids, integer enums, 64-bit integers as
strings) — the format of the OpenTelemetry Collector's `file` exporter and `otlpjsonfile` receiver, so the
files can be replayed into any Collector. A batch is appended with one `write()` on a file opened with
`O_APPEND`, so concurrent writers (threads or processes) never interleave inside a line.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from .diskio import write_whole
from .settings import check_file

__all__ = ('JsonLinesSpanExporter', 'read_spans', 'span_to_json_line')

logger = logging.getLogger('tracegraph.exporters.file')

_ID_FIELDS = ('traceId', 'spanId', 'parentSpanId')


def _ids(obj: Any, convert: Any) -> None:
    """Convert every trace/span id field in a nested OTLP/JSON dict in place (base64 <-> hex)."""
    if isinstance(obj, dict):
        for key, value in obj.items():  # pyright: ignore[reportUnknownVariableType]
            if key in _ID_FIELDS and isinstance(value, str):
                obj[key] = convert(value)
            else:
                _ids(value, convert)
    elif isinstance(obj, list):
        for item in obj:  # pyright: ignore[reportUnknownVariableType]
            _ids(item, convert)


def span_to_json_line(span: ReadableSpan) -> str:
    """One span as an OTLP/JSON `ExportTraceServiceRequest` on a single line (without the newline)."""
    message = json_format.MessageToDict(encode_spans([span]), use_integers_for_enums=True)
    _ids(message, lambda b64: base64.b64decode(b64).hex())  # pyright: ignore[reportUnknownLambdaType, reportUnknownArgumentType, reportUnknownMemberType]
    return json.dumps(message, separators=(',', ':'), ensure_ascii=False)


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
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
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


def read_spans(path: str | PathLike[str], *, strict: bool = False) -> list[ReadableSpan]:
    """Read a JSON Lines file of OTLP/JSON trace requests back into SDK `ReadableSpan`s.

    Lines may hold any number of spans (so files from the Collector's `file` exporter work too). A torn last
    line, left by a process killed while writing, is skipped with a warning; so is (unless `strict`) any other
    line that is not a trace request, with one warning naming how many and where.

    Example:
        ```python
        from tracegraph import NodeTimeline
        from tracegraph.exporters import read_spans

        timelines = NodeTimeline.all_from_spans(read_spans('spans.jsonl'))
        ```

    Raises:
        ValueError: with `strict`, for a line that is not an OTLP/JSON trace request, naming the file and line.
    """
    file = Path(path)
    text = file.read_text(encoding='utf-8', errors='replace')
    lines = text.split('\n')
    spans: list[ReadableSpan] = []
    bad: list[int] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            message = json.loads(line)
            _ids(message, lambda h: base64.b64encode(bytes.fromhex(h)).decode())  # pyright: ignore[reportUnknownLambdaType, reportUnknownArgumentType, reportUnknownMemberType]
            request = json_format.ParseDict(message, ExportTraceServiceRequest())
        except (ValueError, json_format.ParseError) as e:
            if number == len(lines) and not text.endswith('\n'):
                logger.warning('tracegraph: skipping the torn last line %d of %s', number, file)
                break
            if strict:
                raise ValueError(f'{file}:{number}: not an OTLP/JSON trace request: {e}') from e
            bad.append(number)
            continue
        spans.extend(_spans_from_request(request))
    if bad:
        shown = ', '.join(map(str, bad[:10])) + (', ...' if len(bad) > 10 else '')
        logger.warning(
            'tracegraph: skipped %d lines of %s that are not trace requests (lines %s)', len(bad), file, shown
        )
    return spans


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
    return {kv.key: _value(kv.value) for kv in items}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof('value')
    if kind == 'array_value':
        return tuple(_value(v) for v in value.array_value.values)
    if kind == 'kvlist_value':
        return json.dumps({kv.key: _value(kv.value) for kv in value.kvlist_value.values}, default=str)
    if kind is None:
        return None
    return getattr(value, kind)
