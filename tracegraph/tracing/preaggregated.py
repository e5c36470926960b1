"""Metric instruments aggregated on the graph's thread and handed to the SDK at each collection.

`tracegraph.node.duration` is recorded once per node step. A plain `Histogram.record` costs ~9 µs on the graph's
thread with OpenTelemetry's SDK 1.45 (a `Measurement`, the exemplar filter, copying and hashing the attributes, two
locks, per reader), as much as the node span itself. `PreAggregatedHistogram.record` instead adds the duration to a
local aggregate per attribute set — bucket counts, sum, min, max and the last exemplar candidate of each bucket —
under one lock (~1 µs). The SDK calls an asynchronous instrument's callback at the start of every collection (a
periodic export, `force_flush()`, `shutdown()`, a Prometheus scrape, `InMemoryMetricReader.get_metrics_data()`); that
callback merges the local aggregates into the SDK's own aggregation of the same instrument. So every collection sees
every duration recorded before it began, and its points are what per-step records would have made: same name,
unit, buckets, attributes, count, min and max, the sum up to float rounding, and the exemplars the SDK's
default reservoir and filter (the last measurement of each bucket made in a sampled span) would have kept.

Merging writes to the SDK's aggregation internals, which no API offers, so it lives with the SDK code
in `tracegraph.exporters.metrics.sdk_metrics` (this layer imports the OpenTelemetry API only), found through the entry
point that `tracegraph._merge_binders` reads: any SDK `MeterProvider`, `configure()`'s or the user's own, gets it;
without a binder every provider gets `ExactHistogram`. The fast path is taken only for an SDK
instrument whose every reader aggregates it as an explicit bucket histogram with the default aligned exemplar
reservoir (or drops it), under the trace-based or the always-off exemplar filter; any other meter provider, view,
aggregation or SDK version gets `ExactHistogram`, a plain `record` per duration. A reader added later is noticed at
the next record: what was aggregated before it is merged first, for the readers that existed then.

`PendingCounter` does the same for the `tracegraph.run.steps` counter through the public API only: its adds are
summed locally and handed to the SDK counter by one `add` per attribute set in the same collection callback.
"""

from __future__ import annotations

import threading
import weakref
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Protocol, cast

from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Meter, Observation
from opentelemetry.trace import Span

from .._merge_binders import binder_for

__all__ = (
    'Aggregate',
    'MergeTarget',
    'DurationRecorder',
    'ExactHistogram',
    'PendingCounter',
    'PreAggregatedHistogram',
    'duration_recorder',
    'pending_counter',
)


_recorders_lock = threading.Lock()
"""Guards the two registries below (a recorder and a pending counter per SDK instrument)."""


class DurationRecorder(Protocol):
    """Records durations to one histogram; `record` is called on the graph's thread."""

    def record(self, value: float, attributes: dict[str, str], span: Span | None, time_ns: int) -> None:
        """Add `value` (seconds) with `attributes`; `span`, ended at `time_ns`, is the exemplar candidate."""
        ...


class ExactHistogram:
    """One `Histogram.record` per duration: what any meter provider takes (its exemplar: the current span)."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram

    def record(self, value: float, attributes: dict[str, str], span: Span | None, time_ns: int) -> None:
        """Record `value` now, in the current context."""
        self.histogram.record(value, attributes)


class Aggregate:
    """The durations of one attribute set since the last merge."""

    __slots__ = ('attributes', 'counts', 'exemplars', 'max', 'min', 'sum')

    def __init__(self, attributes: dict[str, str], buckets: int) -> None:
        self.attributes = attributes
        self.counts = [0] * buckets
        self.sum = 0.0
        self.min = float('inf')
        self.max = float('-inf')
        self.exemplars: list[tuple[float, int, Span] | None] = [None] * buckets
        """The last duration of each bucket that has a span: (value, time in ns, span)."""


class MergeTarget(Protocol):
    """Where a meter provider aggregates one histogram, and how to add local aggregates to it."""

    instrument: Histogram
    boundaries: Sequence[float]
    """The buckets every reader aggregates with (the local aggregates use them)."""
    exemplars: bool
    """Whether exemplars are kept (of steps in sampled spans)."""

    def readers_changed(self) -> bool:
        """Whether a reader was added or removed since the last `rebind`; cheap, called per record."""
        ...

    def rebind(self) -> bool:
        """Look at the readers again; False when one of them no longer fits the merge."""
        ...

    def merge(self, aggregate: Aggregate) -> None:
        """Add `aggregate` to the aggregation of its attribute set in every reader."""
        ...


class PreAggregatedHistogram:
    """A duration histogram aggregated locally and merged into an SDK histogram when a reader collects."""

    def __init__(self, target: MergeTarget) -> None:
        self._target = target
        self._counters: list[PendingCounter] = []
        self.histogram = target.instrument
        self._bounds = target.boundaries
        self._exemplars = target.exemplars
        self._lock = threading.Lock()
        self._pending: dict[int, Aggregate] = {}
        self.exact: ExactHistogram | None = None
        """Set when the SDK's readers no longer fit the fast path; every later record goes there."""

    def record(self, value: float, attributes: dict[str, str], span: Span | None, time_ns: int) -> None:
        """Add `value` to the aggregate of `attributes` (kept by identity: callers reuse one dict per set)."""
        if self.exact is not None or self._target.readers_changed():
            self._readers_changed()
            if self.exact is not None:
                self.exact.record(value, attributes, span, time_ns)
                return
        index = bisect_left(self._bounds, value)
        with self._lock:
            aggregate = self._pending.get(id(attributes))
            if aggregate is None:
                aggregate = self._pending[id(attributes)] = Aggregate(attributes, len(self._bounds) + 1)
            aggregate.counts[index] += 1
            aggregate.sum += value
            if value < aggregate.min:
                aggregate.min = value
            if value > aggregate.max:
                aggregate.max = value
            if span is not None and self._exemplars and span.get_span_context().trace_flags.sampled:
                aggregate.exemplars[index] = (value, time_ns, span)

    def merge(self) -> None:
        """Hand everything aggregated so far to the SDK (the collection callback; also callable directly)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for aggregate in pending.values():
            self._target.merge(aggregate)

    def flushes(self, counter: PendingCounter) -> None:
        """Flush `counter` at each collection too (once, however often it is asked)."""
        if counter not in self._counters:
            self._counters.append(counter)

    def collect(self, options: CallbackOptions) -> Iterable[Observation]:
        """The asynchronous instrument's callback: merge (and flush the counters), observe nothing of its own."""
        self.merge()
        for counter in self._counters:
            counter.flush()
        return ()

    def _readers_changed(self) -> None:
        if self.exact is not None:
            return
        self.merge()  # into the readers that were there when these durations were recorded
        if not self._target.rebind():
            self.exact = ExactHistogram(self._target.instrument)
        self._bounds = self._target.boundaries


class PendingCounter:
    """A counter whose adds are summed locally and handed to `counter` at each collection of an SDK reader.

    Only for a meter whose collections call asynchronous callbacks (the SDK's); `flush` is that callback's work.
    """

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[dict[str, str], int]] = {}

    def add(self, amount: int, attributes: dict[str, str]) -> None:
        """Count `amount` more for `attributes` (kept by identity, like `PreAggregatedHistogram.record`)."""
        with self._lock:
            found = self._pending.get(id(attributes))
            self._pending[id(attributes)] = (attributes, amount + (found[1] if found is not None else 0))

    def flush(self) -> None:
        """One SDK `add` per attribute set counted since the last flush."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for attributes, amount in pending.values():
            self.counter.add(amount, attributes)


_pending_counters: weakref.WeakValueDictionary[int, PendingCounter] = weakref.WeakValueDictionary()


def pending_counter(counter: Counter) -> PendingCounter:
    """The one `PendingCounter` of `counter` (the SDK hands out the same instrument for the same name)."""
    with _recorders_lock:
        found = _pending_counters.get(id(counter))
        if found is None or found.counter is not counter:
            found = _pending_counters[id(counter)] = PendingCounter(counter)
        return found


_recorders: weakref.WeakValueDictionary[int, ExactHistogram | PreAggregatedHistogram] = weakref.WeakValueDictionary()
"""By instrument id; a pre-aggregated recorder lives as long as its provider holds its callback."""


def duration_recorder(meter: Meter, name: str, histogram: Histogram) -> DurationRecorder:
    """The recorder of `histogram` (named `name`): pre-aggregated when the SDK allows it, else `ExactHistogram`.

    One per instrument and process (the SDK hands out the same instrument for the same name, and registers a
    callback once per name); the collection callback is an asynchronous instrument that never observes anything,
    so it never appears in any export.
    """
    with _recorders_lock:
        found = _recorders.get(id(histogram))
        if found is not None and found.histogram is histogram:
            return found
        bind = binder_for(histogram)
        target = cast(MergeTarget | None, bind(histogram) if bind is not None else None)
        recorder: ExactHistogram | PreAggregatedHistogram
        if target is None:
            recorder = ExactHistogram(histogram)
        else:
            aggregated = PreAggregatedHistogram(target)
            meter.create_observable_up_down_counter(f'{name}.merge', callbacks=[aggregated.collect])
            recorder = aggregated
        _recorders[id(histogram)] = recorder
        return recorder
