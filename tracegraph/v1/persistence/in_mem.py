"""pydantic_graph 1.x's `persistence.in_mem` module: tracegraph's `persistence.in_mem`, under the 1.x path."""

from __future__ import annotations

from typing import Any

from ...persistence import in_mem as _target
from ...persistence.in_mem import *  # noqa: F403

__all__ = _target.__all__  # pyright: ignore[reportUnsupportedDunderAll]


def __getattr__(name: str) -> Any:
    return getattr(_target, name)
