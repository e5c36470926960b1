"""Who can merge pre-aggregated durations into a meter provider's own aggregation, found through entry points.

`tracing.preaggregated` (OpenTelemetry API only) asks, once per histogram, for the binder of the histogram's
implementation. Binders are entry points of the group `tracegraph.merge_binders`, each named after the module
prefix of the instruments it handles: tracegraph's own pyproject declares
`opentelemetry.sdk.metrics = tracegraph.exporters.metrics.sdk_merge_gate:bind`. So a `MeterProvider` of the user's
own gets the merge with no import of theirs, neither layer imports the other, and a binder is imported only when an
instrument of its implementation exists (the entry points are read once per process, at the first histogram).
Importing nothing but the standard library keeps `tracegraph.exporters`' pytest plugin light.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

__all__ = ('GROUP', 'binder_for')

GROUP = 'tracegraph.merge_binders'
"""Entry-point group of the binders: name = module prefix of the instruments, value = `module:function`."""

Binder = Callable[[object], object | None]
"""Returns the `tracing.preaggregated.MergeTarget` of a histogram, or None when it cannot merge into that one."""

_lock = threading.Lock()
_entries: dict[str, EntryPoint] | None = None
_loaded: dict[str, Binder] = {}


def binder_for(instrument: object) -> Binder | None:
    """The binder registered for the module that defines `instrument`'s type (or a package above it), else None."""
    global _entries
    module = type(instrument).__module__
    with _lock:
        if _entries is None:
            _entries = {ep.name: ep for ep in entry_points(group=GROUP)}
        for prefix, entry in _entries.items():
            if module == prefix or module.startswith(f'{prefix}.'):
                if prefix not in _loaded:
                    _loaded[prefix] = entry.load()
                return _loaded[prefix]
    return None
