"""Finished spans as rows, an Arrow table or a pandas DataFrame: one row per span, for analysis in notebooks.

`TelemetryCapture.to_arrow()` and `.to_pandas()` call these. The tracegraph attributes have their own columns
(NULL on spans outside graph runs); every attribute, those included, is also in `attributes` as JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from ...tracing import attributes as attr
from ...tracing.clock import ns_to_datetime
from ...tracing.timeline_tables import optional_module

__all__ = ('SPAN_ROW_FIELDS', 'span_rows', 'spans_arrow', 'spans_pandas')

SPAN_ROW_FIELDS = (
    'trace_id', 'span_id', 'parent_span_id', 'name', 'kind', 'start', 'end', 'duration', 'status',
    'status_message', 'graph', 'run_id', 'node_id', 'step', 'outcome', 'next_node', 'attributes',
)  # fmt: skip
"""The columns of `span_rows`, `spans_arrow` and `spans_pandas`."""


def span_rows(spans: Iterable[ReadableSpan]) -> list[dict[str, Any]]:
    """One dict per span (ids as hex, times as UTC datetimes, duration in seconds)."""
    rows: list[dict[str, Any]] = []
    for s in spans:
        a = dict(s.attributes or {})
        start, end = s.start_time or 0, s.end_time or s.start_time or 0
        step = a.get(attr.NODE_STEP)
        rows.append(
            {
                'trace_id': f'{s.context.trace_id:032x}' if s.context else None,
                'span_id': f'{s.context.span_id:016x}' if s.context else None,
                'parent_span_id': f'{s.parent.span_id:016x}' if s.parent else None,
                'name': s.name,
                'kind': s.kind.name,
                'start': ns_to_datetime(start),
                'end': ns_to_datetime(end),
                'duration': (end - start) / 1e9,
                'status': s.status.status_code.name,
                'status_message': s.status.description,
                'graph': _text(a.get(attr.GRAPH_NAME)),
                'run_id': _text(a.get(attr.RUN_ID)),
                'node_id': _text(a.get(attr.NODE_ID)),
                'step': step if isinstance(step, int) else None,
                'outcome': _text(a.get(attr.NODE_OUTCOME, a.get(attr.RUN_OUTCOME))),
                'next_node': _text(a.get(attr.NODE_NEXT)),
                'attributes': json.dumps(a, default=list, ensure_ascii=False, sort_keys=True),
            }
        )
    return rows


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def spans_arrow(spans: Iterable[ReadableSpan]) -> Any:
    """The spans as a `pyarrow.Table` (columns `SPAN_ROW_FIELDS`)."""
    pa = optional_module('pyarrow', 'TelemetryCapture')
    rows = span_rows(spans)
    types = {
        'start': pa.timestamp('us', tz='UTC'),
        'end': pa.timestamp('us', tz='UTC'),
        'duration': pa.float64(),
        'step': pa.int64(),
    }
    return pa.table(
        {name: pa.array([r[name] for r in rows], type=types.get(name, pa.string())) for name in SPAN_ROW_FIELDS}
    )


def spans_pandas(spans: Iterable[ReadableSpan]) -> Any:
    """The spans as a pandas `DataFrame` (through `spans_arrow`)."""
    optional_module('pandas', 'TelemetryCapture')
    return spans_arrow(spans).to_pandas()
