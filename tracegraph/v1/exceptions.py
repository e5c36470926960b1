"""pydantic_graph 1.x's `exceptions` module: tracegraph's `exceptions`, under the 1.x path."""

from __future__ import annotations

from typing import Any

from .. import exceptions as _target
from ..exceptions import *  # noqa: F403

__all__ = _target.__all__  # pyright: ignore[reportUnsupportedDunderAll]


def __getattr__(name: str) -> Any:
    return getattr(_target, name)
