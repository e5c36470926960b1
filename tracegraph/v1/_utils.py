"""pydantic_graph 1.x's `_utils` module, private helpers included: tracegraph's `_utils`, under the 1.x path."""

from __future__ import annotations

from typing import Any

from .. import _utils as _target
from .._utils import *  # noqa: F403

__all__ = _target.__all__  # pyright: ignore[reportUnsupportedDunderAll]


def __getattr__(name: str) -> Any:
    return getattr(_target, name)
