"""The OpenTelemetry SDK's OTLP exporters for an `OtlpTarget`: what `configure()` and the export process send with."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace.export import SpanExporter

from ..settings import OtlpTarget

__all__ = ('otlp_metric_exporter', 'otlp_span_exporter')


def otlp_span_exporter(target: OtlpTarget) -> SpanExporter:
    """The SDK's OTLP span exporter for `target` (HTTP/protobuf or gRPC; plaintext gRPC for `http://`)."""
    if target.protocol == 'grpc':
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

        insecure = target.endpoint.startswith('http://')
        return GrpcSpanExporter(endpoint=target.endpoint, insecure=insecure, headers=target.headers)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

    return HttpSpanExporter(endpoint=target.endpoint, headers=target.headers)


def otlp_metric_exporter(target: OtlpTarget) -> Any:
    """The SDK's OTLP metric exporter for `target`, like `otlp_span_exporter`."""
    if target.protocol == 'grpc':
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter

        insecure = target.endpoint.startswith('http://')
        return GrpcMetricExporter(endpoint=target.endpoint, insecure=insecure, headers=target.headers)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter

    return HttpMetricExporter(endpoint=target.endpoint, headers=target.headers)
