"""Small helpers shared by the core modules."""

from __future__ import annotations

import asyncio
import inspect
import types
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from typing import Any, Final, TypeAlias, TypeVar, Union, get_args, get_origin

from opentelemetry.trace import Span
from typing_extensions import ParamSpec, TypeAliasType, TypeIs

from .tracing.ids import uuid4_hex
from .tracing.instrument import span_of
from .tracing.propagation import traceparent_of

__all__ = (
    'get_event_loop',
    'Unset',
    'UNSET',
    'is_set',
    'now_utc',
    'uuid4_hex',
    'get_union_args',
    'unpack_annotated',
    'comma_and',
    'get_parent_namespace',
    'run_in_executor',
    'AbstractSpan',
    'get_traceparent',
    'infer_obj_name',
)

T = TypeVar('T')


class Unset:
    """Marks an argument that was not given (where `None` is a meaningful value)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return 'UNSET'


UNSET: Final = Unset()


def is_set(value: T | Unset) -> TypeIs[T]:
    """Whether `value` was given."""
    return value is not UNSET


def now_utc() -> datetime:
    """The current time as a UTC-aware datetime."""
    return datetime.now(tz=timezone.utc)


def get_event_loop() -> asyncio.AbstractEventLoop:
    """The running event loop, else this thread's current one, else a new loop set as the current one.

    What `run_sync` runs on, so that objects bound to a loop (clients, locks) survive from one call to the next.
    Unlike `asyncio.get_event_loop()` on recent Pythons, it never warns and never fails for want of a loop.
    """
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    with warnings.catch_warnings():
        # Asking for the current loop when there is none is deprecated (3.12+) or an error (3.14+): create one.
        warnings.simplefilter('ignore', DeprecationWarning)
        try:
            loop = asyncio.get_event_loop()
        except RuntimeError:
            loop = None
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
    return loop


def get_union_args(tp: Any) -> tuple[Any, ...]:
    """The members of a union type (`A | B`, `Union[A, B]`, a type alias of one), or `(tp,)` for any other type."""
    if isinstance(tp, TypeAliasType) or type(tp).__name__ == 'TypeAliasType':
        tp = tp.__value__
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return get_args(tp)
    return (tp,)


def unpack_annotated(tp: Any) -> tuple[Any, list[Any]]:
    """Split `Annotated[X, a, b]` into `(X, [a, b])`; any other type gives `(tp, [])`."""
    if hasattr(tp, '__metadata__') and hasattr(tp, '__origin__'):
        return tp.__origin__, list(tp.__metadata__)
    return tp, []


def comma_and(items: list[str]) -> str:
    """Join words as prose: `a`, `a and b`, `a, b, and c`."""
    if len(items) <= 2:
        return ' and '.join(items)
    return ', '.join(items[:-1]) + ', and ' + items[-1]


def get_parent_namespace(frame: types.FrameType | None) -> dict[str, Any] | None:
    """The local namespace of the code that called the function whose frame is `frame`.

    Used to resolve forward references in node return hints to classes defined in a function body.
    Frames of `typing`'s generic alias machinery (`Graph[S, D, R](...)`) are skipped.
    """
    if frame is None:
        return None
    back = frame.f_back
    while back is not None and back.f_code.co_filename.endswith('typing.py'):
        back = back.f_back
    if back is None:
        return None
    if back.f_locals is back.f_globals:
        return None
    return dict(back.f_locals)


_P = ParamSpec('_P')
_R = TypeVar('_R')


async def run_in_executor(func: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """Run the blocking `func(*args, **kwargs)` in the running loop's default executor and await its result."""
    return await asyncio.get_running_loop().run_in_executor(None, partial(func, *args, **kwargs))


AbstractSpan: TypeAlias = Span
"""What pydantic_graph 1.x accepts as a span: an OpenTelemetry span (a logfire span is one, wrapped)."""


def get_traceparent(span: object) -> str | None:
    """The W3C `traceparent` of an OpenTelemetry span, or of the span a logfire span wraps; None for anything else."""
    inner: Span | None = span_of(span, span)
    return traceparent_of(inner)


def infer_obj_name(obj: object, *, depth: int) -> str | None:
    """The name of the variable holding `obj` in the frame `depth` frames above this function's caller.

    Locals are searched first, then the frame's globals when they differ; None when no variable holds it.
    """
    frame = inspect.currentframe()
    for _ in range(depth):
        if frame is None:
            return None
        frame = frame.f_back
    if frame is None:
        return None
    for name, item in frame.f_locals.items():
        if item is obj:
            return name
    if frame.f_locals is not frame.f_globals:
        for name, item in frame.f_globals.items():
            if item is obj:
                return name
    return None
