"""The local dashboard: an OTLP/HTTP receiver, a DuckDB store of spans and a web UI, served by `tracegraph serve`.

Needs the `dashboard` extra (DuckDB, Starlette, uvicorn).
"""

from __future__ import annotations

try:
    import duckdb  # noqa: F401  # pyright: ignore[reportUnusedImport]
    import starlette  # noqa: F401  # pyright: ignore[reportUnusedImport]
    import uvicorn  # noqa: F401  # pyright: ignore[reportUnusedImport]
except ImportError as _missing:
    raise ImportError(
        f'tracegraph.dashboard needs the `dashboard` extra ({_missing.name} is missing): '
        "pip install 'tracegraph[dashboard]'"
    ) from _missing

from .store.database import Store, default_db_path
from .store.models import GraphSummary, NodeSpans, NodeStats, RunDetail, RunSummary, SpanInfo, Transition

__all__ = (
    'Transition',
    'GraphSummary',
    'NodeSpans',
    'NodeStats',
    'RunDetail',
    'RunSummary',
    'SpanInfo',
    'Store',
    'default_db_path',
)
