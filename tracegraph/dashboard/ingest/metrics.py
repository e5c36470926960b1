"""Flattening of OTLP metric requests into one row per data point, for the store's `metrics` table."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from ...exporters.otlp.otlpjson import attributes_dict
from ..store.columns import METRIC_COLUMNS, MetricBatch, dumps

__all__ = ('metric_batch',)


def metric_batch(request: ExportMetricsServiceRequest) -> MetricBatch:
    """One row per data point of every metric in `request`."""
    cols: dict[str, list[Any]] = {name: [] for name, _ in METRIC_COLUMNS}

    def add(row: dict[str, Any]) -> None:
        for name, _ in METRIC_COLUMNS:
            cols[name].append(row.get(name))

    for rm in request.resource_metrics:
        service = attributes_dict(rm.resource.attributes).get('service.name')
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                base: dict[str, Any] = {
                    'name': m.name,
                    'unit': m.unit or None,
                    'service_name': None if service is None else str(service),
                    'scope_name': sm.scope.name or None,
                }
                kind = m.WhichOneof('data')
                if kind in ('gauge', 'sum'):
                    points = m.gauge.data_points if kind == 'gauge' else m.sum.data_points
                    for p in points:
                        number = p.as_double if p.WhichOneof('value') == 'as_double' else float(p.as_int)
                        add(base | _point(kind, p) | {'value': number})
                elif kind == 'histogram':
                    for p in m.histogram.data_points:
                        add(
                            base
                            | _point(kind, p)
                            | {
                                'count': p.count,
                                'sum': p.sum if p.HasField('sum') else None,
                                'bounds': dumps(list(p.explicit_bounds)),
                                'bucket_counts': dumps(list(p.bucket_counts)),
                            }
                        )
                elif kind == 'exponential_histogram':
                    for p in m.exponential_histogram.data_points:
                        add(base | _point(kind, p) | {'count': p.count, 'sum': p.sum if p.HasField('sum') else None})
                elif kind == 'summary':
                    for p in m.summary.data_points:
                        add(base | _point(kind, p) | {'count': p.count, 'sum': p.sum})
    return MetricBatch(columns=cols)


def _point(kind: str, p: Any) -> dict[str, Any]:
    return {
        'type': kind,
        'start_ns': p.start_time_unix_nano or None,
        'time_ns': p.time_unix_nano,
        'attributes': dumps(attributes_dict(p.attributes)),
    }
