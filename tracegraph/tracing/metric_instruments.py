"""The metric instruments tracegraph records to, and the providers tapped in beside the global one."""

from __future__ import annotations

import inspect
from typing import Any, cast

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import Counter

from .._version import __version__
from . import attributes as attr
from .preaggregated import DurationRecorder, PendingCounter, PreAggregatedHistogram, duration_recorder, pending_counter

__all__ = ('Instruments', 'meter_taps', 'tee')


class Instruments:
    """`tracegraph.node.duration`, `tracegraph.run.duration` and `tracegraph.run.steps` of one MeterProvider.

    The two durations are recorded through `preaggregated` (pre-aggregated on the SDK, exact elsewhere).
    """

    def __init__(self, provider: otel_metrics.MeterProvider) -> None:
        meter = provider.get_meter(attr.INSTRUMENTATION_SCOPE, __version__)
        steps = meter.create_counter(attr.METRIC_RUN_STEPS, unit='{step}', description='Node steps run')
        self.node_duration = _duration(meter, attr.METRIC_NODE_DURATION, 'Duration of node steps')
        self.run_duration = _duration(meter, attr.METRIC_RUN_DURATION, 'Duration of graph runs')
        # Counted at each collection when the node durations are (the SDK), else one SDK add per batch of steps.
        self.run_steps: Counter | PendingCounter = steps
        if isinstance(self.node_duration, PreAggregatedHistogram):
            self.run_steps = pending_counter(steps)
            self.node_duration.flushes(self.run_steps)
        self._attributes: dict[tuple[str, ...], dict[str, str]] = {}

    def node_attributes(self, graph_name: str, node_id: str, outcome: str) -> dict[str, str]:
        """The attributes of a node step's duration: one dict per set, reused by every run (the pre-aggregated
        histogram keeps its aggregates by the dict's identity)."""
        found = self._attributes.get((graph_name, node_id, outcome))
        if found is None:
            found = {attr.GRAPH_NAME: graph_name, attr.NODE_ID: node_id, attr.NODE_OUTCOME: outcome}
            self._attributes[(graph_name, node_id, outcome)] = found
        return found

    def graph_attributes(self, graph_name: str) -> dict[str, str]:
        """The attributes of `tracegraph.run.steps`, one dict per graph like `node_attributes`."""
        found = self._attributes.get((graph_name,))
        if found is None:
            found = self._attributes[(graph_name,)] = {attr.GRAPH_NAME: graph_name}
        return found

    def run_attributes(self, graph_name: str, outcome: str) -> dict[str, str]:
        """The attributes of a run's duration, one dict per set like `node_attributes`."""
        found = self._attributes.get((graph_name, outcome))
        if found is None:
            found = self._attributes[(graph_name, outcome)] = {attr.GRAPH_NAME: graph_name, attr.RUN_OUTCOME: outcome}
        return found


_ADVISES_BUCKETS = (
    'explicit_bucket_boundaries_advisory' in inspect.signature(otel_metrics.Meter.create_histogram).parameters
)
"""Whether this opentelemetry-api takes bucket advice (1.29+); on older ones the buckets come from `configure()`'s
views (`exporters.views`), or a view of the app's own."""


def _duration(meter: otel_metrics.Meter, name: str, description: str) -> DurationRecorder:
    """A duration histogram of the contract (seconds, `DURATION_BUCKETS`) and its recorder."""
    advice: dict[str, Any] = {'explicit_bucket_boundaries_advisory': attr.DURATION_BUCKETS} if _ADVISES_BUCKETS else {}
    histogram = meter.create_histogram(name, unit='s', description=description, **advice)
    return duration_recorder(meter, name, histogram)


class _Tee:
    """One instrument of several providers: each `record` / `add` goes to all of them."""

    def __init__(self, parts: list[Any]) -> None:
        self._parts = parts

    def record(self, value: float, attributes: Any, span: Any, time_ns: int) -> None:
        for part in self._parts:
            part.record(value, attributes, span, time_ns)

    def add(self, value: float, attributes: Any = None) -> None:
        for part in self._parts:
            part.add(value, attributes)


def tee(providers: list[otel_metrics.MeterProvider]) -> Instruments:
    """Instruments recording to every one of `providers`."""
    parts = [Instruments(p) for p in providers]
    tee = object.__new__(Instruments)
    tee._attributes = {}  # pyright: ignore[reportPrivateUsage]  # the tee is an Instruments built by hand
    tee.node_duration = cast(Any, _Tee([p.node_duration for p in parts]))
    tee.run_duration = cast(Any, _Tee([p.run_duration for p in parts]))
    tee.run_steps = cast(Any, _Tee([p.run_steps for p in parts]))
    return tee


meter_taps: list[otel_metrics.MeterProvider] = []
"""MeterProviders that also get the metrics of graphs using the global one (no `meter_provider=`).

For `TelemetryCapture` when another library (Logfire's `capfire`, `logfire.configure()`) owns the global
MeterProvider, which takes no new reader: the capture's own provider is tapped in from the first capture on.
Empty in production, where it costs nothing (instruments are resolved once per run, never per step)."""
