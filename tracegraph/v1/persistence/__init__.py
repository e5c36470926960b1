"""pydantic_graph 1.x's `persistence` package: tracegraph's `persistence`, under the 1.x path."""

from __future__ import annotations

from typing import Any

from ... import persistence as _target
from ...persistence import *  # noqa: F403

__all__ = _target.__all__  # pyright: ignore[reportUnsupportedDunderAll]


def __getattr__(name: str) -> Any:
    return getattr(_target, name)
