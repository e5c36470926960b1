"""Column layouts of the stored tables, their Arrow form, and the batches of rows the store takes in.

Shared by the decoders (which fill batches) and the store (which writes them).
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ('METRIC_COLUMNS', 'SPAN_COLUMNS', 'MetricBatch', 'SpanBatch', 'arrow', 'arrow_table', 'dumps')

SPAN_COLUMNS: tuple[tuple[str, str], ...] = (
    ('trace_id', 'VARCHAR NOT NULL'),
    ('span_id', 'VARCHAR NOT NULL'),
    ('parent_span_id', 'VARCHAR'),
    ('name', 'VARCHAR NOT NULL'),
    ('kind', 'TINYINT'),
    ('start_ns', 'BIGINT NOT NULL'),
    ('end_ns', 'BIGINT NOT NULL'),
    ('status_code', 'VARCHAR NOT NULL'),
    ('status_message', 'VARCHAR'),
    ('service_name', 'VARCHAR'),
    ('scope_name', 'VARCHAR'),
    ('graph', 'VARCHAR'),
    ('run_id', 'VARCHAR'),
    ('node_id', 'VARCHAR'),
    ('step', 'INTEGER'),
    ('steps', 'INTEGER'),
    ('outcome', 'VARCHAR'),
    ('next_node', 'VARCHAR'),
    ('is_run', 'BOOLEAN NOT NULL'),
    ('attributes', 'VARCHAR'),
    ('events', 'VARCHAR'),
    ('resource', 'VARCHAR'),
)
"""Columns of the `spans` table; the tracegraph ids have their own so queries never parse JSON.

`attributes`, `events` and `resource` hold JSON text in VARCHAR columns (DuckDB's JSON functions read them):
the JSON type would validate every value again on insert, the costliest part of ingest."""

dumps = json.JSONEncoder(ensure_ascii=False, separators=(',', ':'), default=str).encode
"""Compact JSON, as stored in the JSON columns (`attributes`, `events`, `resource`)."""

_ARROW_TYPES = {
    'VARCHAR': 'string',
    'JSON': 'string',
    'TINYINT': 'int8',
    'INTEGER': 'int32',
    'BIGINT': 'int64',
    'BOOLEAN': 'bool_',
    'DOUBLE': 'float64',
}


@functools.cache
def arrow() -> Any:
    """The `pyarrow` module (the `dashboard` extra installs it; imported on first use, it is slow to import)."""
    return importlib.import_module('pyarrow')


def arrow_table(columns: Mapping[str, Sequence[Any]], layout: Sequence[tuple[str, str]]) -> Any:
    """A `pyarrow.Table` of `columns` typed after `layout` (pairs of column name and DuckDB type)."""
    pa = arrow()
    arrays = [pa.array(columns[n], type=getattr(pa, _ARROW_TYPES[t.split()[0]])()) for n, t in layout]
    return pa.table(arrays, names=[n for n, _ in layout])


METRIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ('name', 'VARCHAR'),
    ('unit', 'VARCHAR'),
    ('type', 'VARCHAR'),
    ('service_name', 'VARCHAR'),
    ('scope_name', 'VARCHAR'),
    ('start_ns', 'BIGINT'),
    ('time_ns', 'BIGINT'),
    ('value', 'DOUBLE'),
    ('count', 'BIGINT'),
    ('sum', 'DOUBLE'),
    ('bounds', 'VARCHAR'),
    ('bucket_counts', 'VARCHAR'),
    ('attributes', 'VARCHAR'),
)
"""Columns of the `metrics` table: one row per data point (a gauge/sum value or a histogram); the last three
hold JSON text."""


@dataclass(kw_only=True)
class SpanBatch:
    """The spans of one OTLP request as a `pyarrow.Table` of `SPAN_COLUMNS`, ready to insert."""

    table: Any
    rejected: int = 0
    """Spans dropped because they were unusable (e.g. an invalid trace id)."""
    errors: list[str] = field(default_factory=list[str])

    def __len__(self) -> int:
        return int(self.table.num_rows)

    @property
    def error_message(self) -> str:
        """A message for the OTLP `partial_success` when spans were rejected."""
        return '; '.join(self.errors[:3])


@dataclass(kw_only=True)
class MetricBatch:
    """The data points of one OTLP metrics request, one list per column of `METRIC_COLUMNS`."""

    columns: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(self.columns['name'])
