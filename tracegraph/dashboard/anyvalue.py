"""OTLP `AnyValue` / `KeyValue` lists as plain Python values, shared by the span and metric decoders."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = ('any_value', 'attributes_dict', 'dumps')

_SCALARS = frozenset(('string_value', 'int_value', 'bool_value', 'double_value'))

dumps = json.JSONEncoder(ensure_ascii=False, separators=(',', ':'), default=str).encode
"""Compact JSON, as stored in the JSON columns."""


def any_value(value: AnyValue) -> Any:
    """The Python value of an OTLP `AnyValue` (bytes as hex, arrays as lists, kvlists as dicts)."""
    which = value.WhichOneof('value')
    if which is None:
        return None
    if which in _SCALARS:
        return getattr(value, which)
    if which == 'array_value':
        return [any_value(v) for v in value.array_value.values]
    if which == 'kvlist_value':
        return attributes_dict(value.kvlist_value.values)
    return value.bytes_value.hex()


def attributes_dict(kvs: Any) -> dict[str, Any]:
    """A `repeated KeyValue` as a dict (the last value wins when a key repeats)."""
    out: dict[str, Any] = {}
    kv: KeyValue
    for kv in kvs:
        value = kv.value
        which = value.WhichOneof('value')
        # scalars inline: this loop runs for every attribute of every span received
        out[kv.key] = getattr(value, which) if which in _SCALARS else any_value(value)
    return out
