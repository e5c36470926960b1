"""Metric views and temporality shared by every metrics pipeline tracegraph builds."""

from __future__ import annotations

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from ...tracing import attributes as attr

__all__ = ('metric_views', 'delta_temporality')


def metric_views() -> list[View]:
    """Views giving the two duration histograms the contract's buckets (`attributes.DURATION_BUCKETS`).

    The SDK's default buckets stop at 10 s and start at 5 ms, too coarse for node steps of a few hundred µs.
    """
    buckets = ExplicitBucketHistogramAggregation(boundaries=attr.DURATION_BUCKETS)
    return [
        View(instrument_name=attr.METRIC_NODE_DURATION, aggregation=buckets),
        View(instrument_name=attr.METRIC_RUN_DURATION, aggregation=buckets),
    ]


def delta_temporality() -> dict[type, AggregationTemporality]:
    """Delta temporality for every instrument kind (what an in-memory reader that is drained needs)."""
    kinds: tuple[type, ...] = (
        Counter,
        UpDownCounter,
        Histogram,
        ObservableCounter,
        ObservableUpDownCounter,
        ObservableGauge,
    )
    return dict.fromkeys(kinds, AggregationTemporality.DELTA)
