"""Finished spans as `marshal`-able records: how spans cross from a graph's process to its export process.

A record is a tuple of primitives and of tuples, dicts and strings of them — what `marshal` writes in one C call
— holding everything the OTLP encoder reads from a `ReadableSpan`: name, context, parent, kind, times, attributes,
events, links, status, dropped counts. Resources and instrumentation scopes, shared by many spans, travel once each
as their own frame and are named by number in the span records (`RecordWriter` numbers them, `RecordReader`
keeps them); `otlpencode.encode_records` turns the records into the very bytes the SDK's OTLP encoder makes of the
original spans (tested on spans of real runs and on unusual ones).

Frames on the wire: a 4-byte little-endian length, then `marshal.dumps` of `(kind, *fields)` with kind `R` (resource),
`S` (scope), `P` (span), `F` (flush, with a sequence number the reader acknowledges) or `C` (the configuration,
first and once).
"""

from __future__ import annotations

import marshal
from collections.abc import Iterator
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext

from ..otlp.otlpencode import Resource as ResourceFields
from ..otlp.otlpencode import Scope as ScopeFields

__all__ = ('RecordReader', 'RecordWriter', 'frame', 'read_frames')

_LENGTH = 4


def frame(*fields: Any) -> bytes:
    """One frame: its length, then the marshalled fields."""
    body = marshal.dumps(fields)
    return len(body).to_bytes(_LENGTH, 'little') + body


def read_frames(buffer: bytearray) -> Iterator[tuple[Any, ...]]:
    """The whole frames at the start of `buffer`, removed from it as they are read (a partial one stays)."""
    offset = 0
    while len(buffer) - offset >= _LENGTH:
        size = int.from_bytes(buffer[offset : offset + _LENGTH], 'little')
        if len(buffer) - offset - _LENGTH < size:
            break
        yield marshal.loads(bytes(buffer[offset + _LENGTH : offset + _LENGTH + size]))
        offset += _LENGTH + size
    del buffer[:offset]


def _context(ctx: SpanContext) -> tuple[int, int, int, bool, str]:
    state = ctx.trace_state
    return (ctx.trace_id, ctx.span_id, int(ctx.trace_flags), ctx.is_remote, state.to_header() if state else '')


def _attributes(item: Any) -> tuple[dict[str, Any], int]:
    """A span's, event's or link's attributes and how many were dropped (what the encoder reads of them)."""
    attributes = item.attributes
    return (dict(attributes) if attributes else {}), item.dropped_attributes


class RecordWriter:
    """Turns spans into frames, sending each new resource and scope before the first span that names it."""

    def __init__(self) -> None:
        self._resources: dict[int, tuple[Resource, int]] = {}
        self._scopes: dict[tuple[str, str | None, str | None], int] = {}

    def frames(self, span: ReadableSpan) -> bytes:
        """The frames of `span` (a resource or scope frame first when it is new)."""
        head = b''
        resource = span.resource
        known = self._resources.get(id(resource))
        if known is None or known[0] is not resource:
            known = (resource, len(self._resources))
            self._resources[id(resource)] = known
            head += frame('R', known[1], dict(resource.attributes), resource.schema_url)
        scope = span.instrumentation_scope
        scope_key = (scope.name, scope.version, scope.schema_url) if scope is not None else ('', None, None)
        scope_id = self._scopes.get(scope_key)
        if scope_id is None:
            scope_id = self._scopes[scope_key] = len(self._scopes)
            scope_attributes = dict(scope.attributes or {}) if scope is not None else {}
            head += frame('S', scope_id, *scope_key, scope_attributes)
        context = span.get_span_context()
        assert context is not None
        attributes, dropped_attributes = _attributes(span)
        status = span.status
        return head + frame(
            'P',
            known[1],
            scope_id,
            span.name,
            _context(context),
            _context(span.parent) if span.parent is not None else None,
            span.kind.value,
            span.start_time,
            span.end_time,
            attributes,
            dropped_attributes,
            tuple((e.name, e.timestamp, *_attributes(e)) for e in span.events) if span.events else (),
            span.dropped_events,
            tuple((_context(link.context), *_attributes(link)) for link in span.links) if span.links else (),
            span.dropped_links,
            status.status_code.value,
            status.description,
        )


class RecordReader:
    """Keeps the resources and scopes that span records name by number, in the tables `otlpencode` reads."""

    def __init__(self) -> None:
        self.resources: dict[int, ResourceFields] = {}
        """Each resource number's (attributes, schema url); equal resources share one tuple, as the SDK's encoder
        groups equal resources into one `ResourceSpans`."""
        self.scopes: dict[int, ScopeFields] = {}
        """Each scope number's (name, version, schema url, attributes)."""
        self._equal: dict[bytes, ResourceFields] = {}

    def keep(self, fields: tuple[Any, ...]) -> bool:
        """Keep a resource or scope frame (False); True for a span frame, which the caller encodes."""
        kind = fields[0]
        if kind == 'R':
            _, number, attributes, schema_url = fields
            key = marshal.dumps((sorted(attributes.items()), schema_url))
            self.resources[number] = self._equal.setdefault(key, (attributes, schema_url))
            return False
        if kind == 'S':
            _, number, name, version, schema_url, attributes = fields
            self.scopes[number] = (name, version, schema_url, attributes)
            return False
        if kind == 'P':
            return True
        raise ValueError(f'unknown span-record frame kind {kind!r}')
