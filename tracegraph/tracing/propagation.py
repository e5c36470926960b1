"""W3C `traceparent` strings: the trace context a persisted snapshot carries, so a resumed run can join its trace."""

from __future__ import annotations

import re

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanContext, TraceFlags

__all__ = ('traceparent_of', 'current_traceparent', 'parse_traceparent', 'context_from_traceparent')

_TRACEPARENT = re.compile(r'^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$')


def traceparent_of(span: Span | None) -> str | None:
    """The W3C `traceparent` of `span` (`00-{trace id}-{span id}-{flags}`), None for no span or an invalid one.

    Example:
        ```python
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

        from tracegraph.tracing.propagation import traceparent_of

        span = NonRecordingSpan(SpanContext(0xABC, 0x12, is_remote=False, trace_flags=TraceFlags(1)))
        print(traceparent_of(span))
        #> 00-00000000000000000000000000000abc-0000000000000012-01
        ```
    """
    if span is None:
        return None
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f'00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}'


def current_traceparent() -> str | None:
    """The `traceparent` of the current span, None when there is none (e.g. no SDK configured)."""
    return traceparent_of(trace.get_current_span())


def parse_traceparent(traceparent: str | None) -> SpanContext | None:
    """The remote span context a `traceparent` names, None when it is missing or not a version-00 traceparent."""
    if not traceparent:
        return None
    match = _TRACEPARENT.match(traceparent.strip().lower())
    if match is None:
        return None
    trace_id, span_id, flags = int(match[1], 16), int(match[2], 16), int(match[3], 16)
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))


def context_from_traceparent(traceparent: str | None) -> Context | None:
    """A context whose current span is the remote parent named by `traceparent` (None when it names none)."""
    span_context = parse_traceparent(traceparent)
    if span_context is None:
        return None
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context))
