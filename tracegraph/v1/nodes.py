"""pydantic_graph 1.x's `nodes` module: tracegraph's `nodes`, under the 1.x path."""

from __future__ import annotations

from typing import Any

from .. import nodes as _target
from ..nodes import *  # noqa: F403

# `generate_snapshot_id` is a global here too: tests patch it under this name (`nodes.SNAPSHOT_ID_PATCH_POINTS`).

__all__ = _target.__all__  # pyright: ignore[reportUnsupportedDunderAll]


def __getattr__(name: str) -> Any:
    return getattr(_target, name)
