"""The version gate of the SDK merge (`exporters.sdk_metrics`), which writes private state of the OpenTelemetry SDK.

The merge is enabled only on the SDK versions CI runs its tests against (`MERGE_TESTED_SDK_VERSIONS`); on any other
version `bind` returns None and each duration is one SDK `record`: exact, only slower. The entry point
`tracegraph.merge_binders: opentelemetry.sdk.metrics` names this `bind`, and `exporters.sdk_metrics` is imported only
when the gate is open, so an SDK whose internals moved is never imported into. tests/test_tracing_metrics_timeline.py
checks that the gate is open exactly on the versions listed here.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

__all__ = ('MERGE_TESTED_SDK_VERSIONS', 'merge_enabled', 'bind')

MERGE_TESTED_SDK_VERSIONS = frozenset({'1.45.2'})
"""opentelemetry-sdk versions the merge is tested on. The lowest allowed (1.28) lacks internals it reads
(`_hash_attributes`), so there durations are recorded step by step."""


@cache
def merge_enabled() -> bool:
    """Whether the installed opentelemetry-sdk is one the merge was tested on."""
    try:
        return version('opentelemetry-sdk') in MERGE_TESTED_SDK_VERSIONS
    except PackageNotFoundError:
        return False


def bind(instrument: Any) -> Any:
    """The SDK merge target of `instrument` when the gate is open, else None (the caller records each duration)."""
    if not merge_enabled():
        return None
    from .sdk_metrics import bind as merge_bind

    return merge_bind(instrument)
