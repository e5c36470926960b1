"""Column layouts of the stored tables and their Arrow form, shared by the decoders and the store."""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ('SPAN_COLUMNS', 'arrow', 'arrow_table', 'dumps')

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
