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

Merging writes to the SDK's aggregation internals, which no API offers (`_SdkTarget` reads them, and is the only
code that does). The fast path is taken only for an SDK instrument whose every reader aggregates it as an explicit
bucket histogram with the default aligned exemplar reservoir (or drops it), under the trace-based or the
always-off exemplar filter; any other meter provider, view,
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
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Meter, Observation
from opentelemetry.trace import Span

__all__ = (
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


class _Aggregate:
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


class PreAggregatedHistogram:
    """A duration histogram aggregated locally and merged into an SDK histogram when a reader collects."""

    def __init__(self, target: _SdkTarget) -> None:
        self._target = target
        self._counters: list[PendingCounter] = []
        self.histogram = target.instrument
        self._bounds = target.boundaries
        self._exemplars = target.exemplars
        self._lock = threading.Lock()
        self._pending: dict[int, _Aggregate] = {}
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
                aggregate = self._pending[id(attributes)] = _Aggregate(attributes, len(self._bounds) + 1)
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
        target = _SdkTarget.bind(histogram)
        recorder: ExactHistogram | PreAggregatedHistogram
        if target is None:
            recorder = ExactHistogram(histogram)
        else:
            aggregated = PreAggregatedHistogram(target)
            meter.create_observable_up_down_counter(f'{name}.merge', callbacks=[aggregated.collect])
            recorder = aggregated
        _recorders[id(histogram)] = recorder
        return recorder


class _SdkTarget:
    """Where an SDK histogram's aggregations live, for every reader: the SDK internals the merge relies on.

    Read: `instrument._measurement_consumer` (`_reader_storages`, `_sdk_config.exemplar_filter`), each storage's
    `_get_or_init_view_instrument_match`, each match's `_view._attribute_keys`, `_reset_on_collect`, `_lock`,
    `_attributes_aggregation`, `_get_or_create_aggregation` and prototype `_aggregation`, and each explicit bucket
    aggregation's `_lock`, `_value`, `_sum`, `_min`, `_max`, `_record_min_max`, `_boundaries`, `_reservoir` and
    `_sample_exemplar`. Anything missing or of another kind: `bind` returns None and the caller records exactly.
    """

    def __init__(self, instrument: Histogram, consumer: Any) -> None:
        self.instrument = instrument
        self._consumer = consumer
        self._storages: object = None
        self._matches: list[Any] = []
        self._hash: Any = None
        self._measurement: Any = None
        self.exemplars = False
        self.boundaries: Sequence[float] = ()

    @classmethod
    def bind(cls, instrument: Histogram) -> _SdkTarget | None:
        consumer = getattr(instrument, '_measurement_consumer', None)
        if not hasattr(getattr(consumer, '_sdk_config', None), 'exemplar_filter'):
            return None
        target = cls(instrument, consumer)
        return target if target.rebind() else None

    def readers_changed(self) -> bool:
        """Whether a reader was added or removed since the last `rebind` (the SDK replaces the mapping)."""
        return getattr(self._consumer, '_reader_storages', None) is not self._storages

    def rebind(self) -> bool:
        """Find the aggregation of every reader; False when one of them does not fit the merge."""
        try:
            from opentelemetry.sdk.metrics._internal._view_instrument_match import (
                _hash_attributes,  # pyright: ignore[reportPrivateUsage]
            )
            from opentelemetry.sdk.metrics._internal.aggregation import (
                _DropAggregation,  # pyright: ignore[reportPrivateUsage]
                _ExplicitBucketHistogramAggregation,  # pyright: ignore[reportPrivateUsage]
            )
            from opentelemetry.sdk.metrics._internal.exemplar import (
                AlignedHistogramBucketExemplarReservoir,
                AlwaysOffExemplarFilter,
                TraceBasedExemplarFilter,
            )
            from opentelemetry.sdk.metrics._internal.measurement import Measurement
        except ImportError:
            return False
        exemplar_filter = self._consumer._sdk_config.exemplar_filter
        # The two filters whose choice a merge can replay: sampled spans only, or nothing.
        if type(exemplar_filter) not in (TraceBasedExemplarFilter, AlwaysOffExemplarFilter):
            return False
        storages = getattr(self._consumer, '_reader_storages', None)
        matches: list[Any] = []
        boundaries: set[tuple[float, ...]] = set()
        try:
            for storage in storages.values():  # pyright: ignore[reportOptionalMemberAccess]
                for match in storage._get_or_init_view_instrument_match(self.instrument):
                    prototype = match._aggregation
                    if isinstance(prototype, _DropAggregation):
                        continue
                    if not isinstance(prototype, _ExplicitBucketHistogramAggregation):
                        return False
                    fields: Any = prototype  # the SDK's own fields, read on purpose
                    if not isinstance(fields._reservoir, AlignedHistogramBucketExemplarReservoir):
                        return False
                    for name in ('_lock', '_attributes_aggregation', '_get_or_create_aggregation', '_reset_on_collect'):
                        if not hasattr(match, name):
                            return False
                    boundaries.add(tuple(fields._boundaries))
                    matches.append(match)
        except (AttributeError, TypeError):
            return False
        if len(boundaries) > 1:
            return False  # readers bucket differently: one local aggregate cannot serve both
        self._storages = storages
        self._matches = matches
        self._hash = _hash_attributes
        self._measurement = Measurement
        self.exemplars = isinstance(exemplar_filter, TraceBasedExemplarFilter)
        self.boundaries = next(iter(boundaries), ())
        return True

    def merge(self, aggregate: _Aggregate) -> None:
        """Add `aggregate` to the SDK aggregation of its attribute set in every reader."""
        candidates = [
            self._measurement(value, time_ns, self.instrument, trace.set_span_in_context(span), aggregate.attributes)
            for value, time_ns, span in filter(None, aggregate.exemplars)
        ]
        for match in self._matches:
            keys = match._view._attribute_keys
            attributes = dict(aggregate.attributes)
            if keys is not None:
                attributes = {k: v for k, v in attributes.items() if k in keys}
            key = self._hash(attributes)
            if match._reset_on_collect:
                with match._lock:  # a delta collection drops aggregations: add while it cannot run
                    _add(match._get_or_create_aggregation(key, attributes), aggregate, candidates)
                continue
            aggregation = match._attributes_aggregation.get(key)
            if aggregation is None:
                with match._lock:
                    aggregation = match._get_or_create_aggregation(key, attributes)
            _add(aggregation, aggregate, candidates)


def _add(aggregation: Any, aggregate: _Aggregate, candidates: list[Any]) -> None:
    """What `_ExplicitBucketHistogramAggregation.aggregate` does per measurement, once for all of them."""
    with aggregation._lock:
        if aggregation._value is None:
            aggregation._value = [0] * len(aggregate.counts)
        counts = aggregation._value
        for index, count in enumerate(aggregate.counts):
            counts[index] += count
        aggregation._sum += aggregate.sum
        if aggregation._record_min_max:
            aggregation._min = min(aggregation._min, aggregate.min)
            aggregation._max = max(aggregation._max, aggregate.max)
    for measurement in candidates:  # each was sampled when recorded (the trace-based filter's rule)
        aggregation._sample_exemplar(measurement, True)
