"""Who can merge pre-aggregated durations into a meter provider's own aggregation: a list tracing and exporters share.

`tracing.preaggregated` (OpenTelemetry API only) asks each binder, once per histogram, for a merge target;
`tracegraph.exporters` adds the OpenTelemetry SDK's binder when it is imported (the pytest plugin, `configure()` and
the capture all import it). It lives here, importing nothing, so that neither layer imports the other and
importing `tracegraph.exporters` stays as cheap as the pytest plugin needs.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ('merge_binders',)

merge_binders: list[Callable[[object], object | None]] = []
"""Functions returning the `tracing.preaggregated.MergeTarget` of a histogram their implementation owns, else None."""
