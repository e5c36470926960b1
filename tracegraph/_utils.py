"""Small helpers shared by the core modules."""

from __future__ import annotations

import asyncio
import types
import warnings
from datetime import datetime, timezone
from typing import Any, Final, TypeVar, Union, get_args, get_origin

from typing_extensions import TypeAliasType, TypeIs

from .tracing.ids import uuid4_hex

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
