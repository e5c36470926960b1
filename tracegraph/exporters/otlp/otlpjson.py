"""OTLP messages in their JSON form and OTLP values as Python values: the one decoder every reader uses.

OTLP/JSON is protobuf's JSON mapping with one difference: trace and span ids are hex, where the mapping expects
base64. The file exporter writes lines with `trace_request_to_json`; `read_spans`, `tracegraph report --file` and
the dashboard's receiver read them (and any OTLP/JSON body) with `trace_request_from_json`. `any_value` and
`attributes_dict` turn `AnyValue`s into plain Python values for all of them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = (
    'ID_FIELDS',
    'any_value',
    'attributes_dict',
    'ids_to_base64',
    'ids_to_hex',
    'message_from_json',
    'trace_request_from_json',
    'trace_request_to_json',
)

ID_FIELDS = frozenset(('traceId', 'spanId', 'parentSpanId'))
"""The fields OTLP/JSON writes in hex (in spans, links and exemplars)."""
_SCALARS = frozenset(('string_value', 'int_value', 'bool_value', 'double_value'))
_M = TypeVar('_M', bound=Message)


def _convert_ids(data: Any, convert: Callable[[str, object], str]) -> None:
    """Apply `convert(field, value)` to every id field anywhere in `data`, in place; iterative, for deep bodies."""
    stack: list[Any] = [data]
    while stack:
        item: Any = stack.pop()
        if isinstance(item, dict):
            fields = cast(dict[str, Any], item)
            for key, value in fields.items():
                if key in ID_FIELDS and value is not None and value != '':
                    fields[key] = convert(key, value)
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(cast(list[Any], item))


def _hex_to_base64(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f'{key} must be a hex string, got {type(value).__name__}.')
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError:
        raise ValueError(f'{key} {value!r} is not hex.') from None


def _base64_to_hex(key: str, value: object) -> str:
    try:
        return base64.b64decode(str(value), validate=True).hex()
    except binascii.Error:
        raise ValueError(f'{key} {value!r} is not base64.') from None


def ids_to_base64(data: Any) -> None:
    """OTLP/JSON -> protobuf's JSON mapping, in place.

    Raises:
        ValueError: an id is not a hex string (the message names the field and value).
    """
    _convert_ids(data, _hex_to_base64)


def ids_to_hex(data: Any) -> None:
    """Protobuf's JSON mapping -> OTLP/JSON, in place."""
    _convert_ids(data, _base64_to_hex)


def message_from_json(data: dict[str, Any], cls: type[_M]) -> _M:
    """An OTLP/JSON object (hex ids, camelCase or snake_case fields) as the protobuf message `cls`; unknown
    fields are ignored, as the OTLP specification asks of receivers.

    Raises:
        ValueError: an id is not hex, or a field has the wrong type (the message says which).
    """
    ids_to_base64(data)
    try:
        return json_format.ParseDict(data, cls(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ValueError(str(exc)) from None


def trace_request_from_json(data: dict[str, Any]) -> ExportTraceServiceRequest:
    """An OTLP/JSON `ExportTraceServiceRequest` as the protobuf message (see `message_from_json`)."""
    return message_from_json(data, ExportTraceServiceRequest)


def trace_request_to_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """The OTLP/JSON form of a request: camelCase, hex ids, integer enums, 64-bit integers as strings."""
    data = json_format.MessageToDict(request, use_integers_for_enums=True)
    ids_to_hex(data)
    return data


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


def attributes_dict(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    """A `repeated KeyValue` as a dict (the last value wins when a key repeats)."""
    out: dict[str, Any] = {}
    for kv in kvs:
        value = kv.value
        which = value.WhichOneof('value')
        # scalars inline: this loop runs for every attribute of every span received
        out[kv.key] = getattr(value, which) if which in _SCALARS else any_value(value)
    return out
