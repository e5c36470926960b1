"""pydantic_graph 1.x's `persistence._utils` module: tracegraph's `persistence._utils`, under the 1.x path."""

from __future__ import annotations

from typing import Any

from ...persistence import _utils as _target
from ...persistence._utils import *  # noqa: F403

__all__ = _target.__all__  # pyright: ignore[reportUnsupportedDunderAll]


def __getattr__(name: str) -> Any:
    return getattr(_target, name)
