"""The OpenTelemetry SDK's side of `tracing.preaggregated`: merging local duration aggregates into an SDK histogram.

`tracing.preaggregated` keeps node and run durations as local bucket counts and hands them over at each collection.
Adding them to the SDK's own aggregation means writing its internals, which no API offers, so that code lives here,
with the other SDK code; the project's entry point `tracegraph.merge_binders: opentelemetry.sdk.metrics` names
`bind` (see `tracegraph._merge_binders`). `SdkHistogramTarget` lists every internal it reads; when any is missing
or of another kind (a view with another aggregation or reservoir, another exemplar filter, another SDK version),
`bind` returns None and the histogram is recorded step by step instead — exact, only slower.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import Histogram
from opentelemetry.sdk.metrics._internal._view_instrument_match import (
    _hash_attributes,  # pyright: ignore[reportPrivateUsage]  # the key the SDK files aggregations under
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

from ...tracing.preaggregated import Aggregate

__all__ = ('SdkHistogramTarget', 'bind')


class SdkHistogramTarget:
    """Where an SDK histogram's aggregations live, for every reader: the SDK internals the merge relies on.

    Read: `instrument._measurement_consumer` (`_reader_storages`, `_sdk_config.exemplar_filter`), each storage's
    `_get_or_init_view_instrument_match`, each match's `_view._attribute_keys`, `_reset_on_collect`, `_lock`,
    `_attributes_aggregation`, `_get_or_create_aggregation` and prototype `_aggregation`, and each explicit bucket
    aggregation's `_lock`, `_value`, `_sum`, `_min`, `_max`, `_record_min_max`, `_boundaries`, `_reservoir` and
    `_sample_exemplar`. Anything missing or of another kind: `bind` returns None and the caller records exactly.
    """

    def __init__(self, instrument: Histogram, consumer: Any) -> None:
        self.instrument = instrument
        self._sdk_instrument: Any = instrument  # the SDK's own instrument class, as `Measurement` types it
        self._consumer = consumer
        self._storages: object = None
        self._matches: list[Any] = []
        self.exemplars = False
        self.boundaries: Sequence[float] = ()

    @classmethod
    def bind(cls, instrument: Histogram) -> SdkHistogramTarget | None:
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
        self.exemplars = isinstance(exemplar_filter, TraceBasedExemplarFilter)
        self.boundaries = next(iter(boundaries), ())
        return True

    def merge(self, aggregate: Aggregate) -> None:
        """Add `aggregate` to the SDK aggregation of its attribute set in every reader."""
        candidates = [
            Measurement(value, time_ns, self._sdk_instrument, trace.set_span_in_context(span), aggregate.attributes)
            for value, time_ns, span in filter(None, aggregate.exemplars)
        ]
        for match in self._matches:
            keys = match._view._attribute_keys
            attributes = dict(aggregate.attributes)
            if keys is not None:
                attributes = {k: v for k, v in attributes.items() if k in keys}
            key = _hash_attributes(attributes)
            if match._reset_on_collect:
                with match._lock:  # a delta collection drops aggregations: add while it cannot run
                    _add(match._get_or_create_aggregation(key, attributes), aggregate, candidates)
                continue
            aggregation = match._attributes_aggregation.get(key)
            if aggregation is None:
                with match._lock:
                    aggregation = match._get_or_create_aggregation(key, attributes)
            _add(aggregation, aggregate, candidates)


def _add(aggregation: Any, aggregate: Aggregate, candidates: list[Any]) -> None:
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


def bind(histogram: object) -> SdkHistogramTarget | None:
    """The merge target of an SDK histogram, None for any other (or one whose readers do not fit the merge)."""
    return SdkHistogramTarget.bind(histogram) if isinstance(histogram, Histogram) else None
