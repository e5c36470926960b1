"""`configure()`: one call that builds tracegraph's OpenTelemetry pipeline, and the `Telemetry` handle it returns."""

from __future__ import annotations

import atexit
import logging
import threading
from dataclasses import dataclass, field
from os import PathLike
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics._internal import _ProxyMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from .._version import __version__
from .drops import CountingBatchSpanProcessor, DropCounter
from .settings import (
    ConfigurationError,
    OtlpTarget,
    check_file,
    check_spool_dir,
    http_url,
    otlp_requested,
    resolve_target,
)
from .views import metric_views

if TYPE_CHECKING:
    from .spool import SpoolSpanExporter

__all__ = ('configure', 'Telemetry')

logger = logging.getLogger('tracegraph.exporters')
_announced_existing = threading.Event()


class _Attached(SynchronousMultiSpanProcessor):
    """Our processors inside a provider we do not own: it cannot remove them, so they switch off on shutdown."""

    def __init__(self) -> None:
        super().__init__()
        self.enabled = True

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self.enabled:
            super().on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self.enabled:
            super().on_end(span)

    def shutdown(self) -> None:
        self.enabled = False
        super().shutdown()


@dataclass(kw_only=True)
class Telemetry:
    """The pipeline `configure()` built: providers, processors, and how to flush and stop them.

    Use it as a context manager to shut it down at the end of a block; otherwise it is flushed and shut down
    when the interpreter exits.
    """

    tracer_provider: Any
    """The SDK `TracerProvider` built, or the existing global provider the processors were added to."""
    meter_provider: MeterProvider | None
    """The SDK `MeterProvider` built (None with `metrics=False`)."""
    span_processors: list[SpanProcessor]
    """The processors configure() created, in the order spans reach them."""
    owns_tracer_provider: bool
    """False when the processors were added to a provider that was already global (e.g. Logfire's)."""
    prometheus_url: str | None = None
    """`http://host:port/metrics` when `prometheus_port` was given."""
    spool: SpoolSpanExporter | None = None
    """The spool exporter when `spool_dir` was given (see its `pending_spans`, `dropped_spans`)."""
    drops: DropCounter = field(default_factory=DropCounter)
    """Spans the batch processors dropped (queue full) or failed to export, by reason."""
    _attached: _Attached | None = None
    _prometheus_server: Any = None
    _prometheus_thread: threading.Thread | None = None
    _closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def dropped_spans(self) -> dict[str, int]:
        """Every span lost so far, by reason: the batch processors' (`queue_full`, `export_failed`) and the spool's.

        The same counts go out as the counters `tracegraph.export.dropped` and `tracegraph.spool.dropped_spans`.
        """
        counts = self.drops.counts
        if self.spool is not None:
            for reason, n in self.spool.dropped_spans.items():
                counts[reason] = counts.get(reason, 0) + n
        return counts

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything buffered now and, with a spool, wait until the backend acknowledged it.

        Returns:
            True when every processor and metric reader finished in time and the spool holds nothing unsent;
            False otherwise (what is left stays in the spool and is sent later).
        """
        if self.owns_tracer_provider:
            ok = bool(self.tracer_provider.force_flush(timeout_millis))
        else:
            ok = all(p.force_flush(timeout_millis) for p in self.span_processors)
        if self.spool is not None:
            # The batch processor only hands spans to the spool; delivery is the spool's to wait for.
            ok = self.spool.force_flush(timeout_millis) and ok
        if self.meter_provider is not None:
            ok = self.meter_provider.force_flush(timeout_millis) and ok
        return ok

    def shutdown(self) -> None:
        """Flush and stop every processor, reader and server this handle owns; later calls do nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.shutdown)
        if self.owns_tracer_provider:
            self.tracer_provider.shutdown()
        elif self._attached is not None:
            self._attached.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()
        if self._prometheus_server is not None:
            self._prometheus_server.shutdown()
            self._prometheus_server.server_close()
            if self._prometheus_thread is not None:
                self._prometheus_thread.join(5)

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()


SPOOL_SCHEDULE_DELAY_MILLIS = 100
"""How long the batch processor in front of a spool holds spans before writing them (the SDK's default is 5 s):
a SIGKILL loses at most the spans that ended in this window plus one write, under 200 ms."""


def configure(
    *,
    service_name: str | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: dict[str, str] | str | None = None,
    console: bool | IO[str] = False,
    file: str | PathLike[str] | None = None,
    spool_dir: str | PathLike[str] | None = None,
    metrics: bool = True,
    set_global: bool = True,
    prometheus_port: int | None = None,
    prometheus_host: str = '127.0.0.1',
    service_version: str | None = None,
    spool_max_bytes: int = 256 * 1024 * 1024,
) -> Telemetry:
    """Build tracer and meter providers that send tracegraph's spans and metrics where you say.

    Args:
        service_name: `service.name` of the resource (else `OTEL_SERVICE_NAME`, else the SDK default).
        endpoint: OTLP base URL, e.g. `http://localhost:4318` (else the `OTEL_EXPORTER_OTLP_*ENDPOINT`
            variables). OTLP export is on when an endpoint is known, with `spool_dir`, or when no other
            output (console, file, Prometheus) was asked for; it defaults to `http://localhost:4318`
            (`http://localhost:4317` for gRPC).
        protocol: `http/protobuf` (default) or `grpc` (else `OTEL_EXPORTER_OTLP_*PROTOCOL`).
        headers: OTLP headers as a dict or `k1=v1,k2=v2` (else `OTEL_EXPORTER_OTLP_*HEADERS`).
        console: print each run's timeline when it ends (True: to standard error; or a text stream).
        file: append every span to this JSON Lines file (OTLP/JSON).
        spool_dir: send spans through a durable spool in this directory instead of directly.
        metrics: build a `MeterProvider` exporting tracegraph's metrics over OTLP (and Prometheus).
        set_global: install the providers as OpenTelemetry's global ones, which tracegraph uses.
        prometheus_port: also serve metrics at `http://{prometheus_host}:{prometheus_port}/metrics`
            (0 picks a free port; see `Telemetry.prometheus_url`).
        prometheus_host: address the Prometheus endpoint binds; loopback unless you say otherwise.
        service_version: `service.version` of the resource.
        spool_max_bytes: bound on the spool's disk use.

    Raises:
        ConfigurationError: for a bad setting, naming it and its value, before anything is built.
    """
    # --- validate everything first: a bad setting must not leave half a pipeline behind ---
    nothing_else = not console and file is None and prometheus_port is None
    use_otlp = otlp_requested(endpoint) or spool_dir is not None or nothing_else
    trace_target = resolve_target(endpoint=endpoint, protocol=protocol, headers=headers, signal='traces')
    metric_target = resolve_target(endpoint=endpoint, protocol=protocol, headers=headers, signal='metrics')
    spool_path = check_spool_dir(spool_dir) if spool_dir is not None else None
    file_path = check_file(file) if file is not None else None
    if spool_max_bytes <= 0:
        raise ConfigurationError(f'spool_max_bytes must be positive, got {spool_max_bytes!r}.')
    if prometheus_port is not None and not (isinstance(prometheus_port, int) and 0 <= prometheus_port <= 65535):
        raise ConfigurationError(f'prometheus_port must be an integer from 0 to 65535, got {prometheus_port!r}.')
    _check_global_provider(set_global)

    resource = _resource(service_name, service_version)
    meter_provider: MeterProvider | None = None
    telemetry_kwargs: dict[str, Any] = {}
    if metrics:
        readers: list[MetricReader] = []
        if prometheus_port is not None:  # first: binding the port is the one step here that can still fail
            reader, server, thread, url = _prometheus(prometheus_host, prometheus_port)
            readers.append(reader)
            telemetry_kwargs.update(_prometheus_server=server, _prometheus_thread=thread, prometheus_url=url)
        if use_otlp:
            readers.append(PeriodicExportingMetricReader(_otlp_metric_exporter(metric_target)))
        meter_provider = MeterProvider(
            resource=resource, metric_readers=readers, views=metric_views(), shutdown_on_exit=False
        )

    drops = DropCounter()
    telemetry_kwargs['drops'] = drops
    if meter_provider is not None:
        drops.register(meter_provider)
    processors: list[SpanProcessor] = []
    if console:
        from .console import ConsoleTimelineProcessor

        processors.append(ConsoleTimelineProcessor(None if console is True else console))
    if file_path is not None:
        from .file import JsonLinesSpanExporter

        processors.append(CountingBatchSpanProcessor(JsonLinesSpanExporter(file_path), drops))
    if spool_path is not None:
        from .segments import SpoolLockedError
        from .spool import SpoolSpanExporter

        try:
            spool = SpoolSpanExporter(
                spool_path, target=trace_target, max_bytes=spool_max_bytes, meter_provider=meter_provider
            )
        except SpoolLockedError as e:
            if meter_provider is not None:
                meter_provider.shutdown()
            _close_prometheus(telemetry_kwargs)
            raise ConfigurationError(str(e)) from e
        telemetry_kwargs['spool'] = spool
        # The spool's point is to survive a crash: a span waits at most this long in memory before it is on disk.
        processors.append(CountingBatchSpanProcessor(spool, drops, schedule_delay_millis=SPOOL_SCHEDULE_DELAY_MILLIS))
    elif use_otlp:
        processors.append(CountingBatchSpanProcessor(_otlp_span_exporter(trace_target), drops))

    telemetry = _install(resource, processors, meter_provider, set_global=set_global, **telemetry_kwargs)
    atexit.register(telemetry.shutdown)
    return telemetry


def _install(
    resource: Resource,
    processors: list[SpanProcessor],
    meter_provider: MeterProvider | None,
    *,
    set_global: bool,
    **kwargs: Any,
) -> Telemetry:
    current = trace.get_tracer_provider()
    existing = set_global and not isinstance(current, trace.ProxyTracerProvider)
    if existing:
        attached = _Attached()
        for processor in processors:
            attached.add_span_processor(processor)
        current.add_span_processor(attached)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
        if not _announced_existing.is_set():
            _announced_existing.set()
            logger.info(
                'tracegraph: a global TracerProvider (%s) already exists; adding tracegraph exporters to it '
                'instead of replacing it',
                type(current).__name__,
            )
        provider: Any = current
        telemetry = Telemetry(
            tracer_provider=provider,
            meter_provider=meter_provider,
            span_processors=processors,
            owns_tracer_provider=False,
            _attached=attached,
            **kwargs,
        )
    else:
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        for processor in processors:
            provider.add_span_processor(processor)
        if set_global:
            trace.set_tracer_provider(provider)
        telemetry = Telemetry(
            tracer_provider=provider,
            meter_provider=meter_provider,
            span_processors=processors,
            owns_tracer_provider=True,
            **kwargs,
        )
    if set_global and meter_provider is not None:
        if isinstance(metrics.get_meter_provider(), _ProxyMeterProvider):
            metrics.set_meter_provider(meter_provider)
        else:
            logger.info(
                'tracegraph: a global MeterProvider already exists; tracegraph metrics go to it, '
                'not to the exporters configure() built'
            )
    return telemetry


def _check_global_provider(set_global: bool) -> None:
    current = trace.get_tracer_provider()
    if set_global and not isinstance(current, trace.ProxyTracerProvider) and not hasattr(current, 'add_span_processor'):
        raise ConfigurationError(
            f'set_global=True, but the global TracerProvider is a {type(current).__name__}, '
            'which does not accept span processors; pass set_global=False and use the returned providers.'
        )


def _resource(service_name: str | None, service_version: str | None) -> Resource:
    attributes: dict[str, str] = {'telemetry.distro.name': 'tracegraph', 'telemetry.distro.version': __version__}
    if service_name:
        attributes['service.name'] = service_name
    if service_version:
        attributes['service.version'] = service_version
    return Resource.create(attributes)


def _otlp_span_exporter(target: OtlpTarget) -> SpanExporter:
    if target.protocol == 'grpc':
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

        insecure = target.endpoint.startswith('http://')
        return GrpcSpanExporter(endpoint=target.endpoint, insecure=insecure, headers=target.headers)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

    return HttpSpanExporter(endpoint=target.endpoint, headers=target.headers)


def _otlp_metric_exporter(target: OtlpTarget) -> Any:
    if target.protocol == 'grpc':
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter

        insecure = target.endpoint.startswith('http://')
        return GrpcMetricExporter(endpoint=target.endpoint, insecure=insecure, headers=target.headers)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter

    return HttpMetricExporter(endpoint=target.endpoint, headers=target.headers)


def _close_prometheus(kwargs: dict[str, Any]) -> None:
    server = kwargs.get('_prometheus_server')
    if server is not None:
        server.shutdown()
        server.server_close()


def _prometheus(host: str, port: int) -> tuple[MetricReader, Any, threading.Thread, str]:
    import prometheus_client
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    # A registry per configure() call: a second call (or a test) must not collide in the process-wide one.
    registry = prometheus_client.CollectorRegistry()
    prometheus_client.ProcessCollector(registry=registry)
    prometheus_client.GCCollector(registry=registry)
    reader = PrometheusMetricReader(registry=registry)
    try:
        server, thread = prometheus_client.start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        raise ConfigurationError(f'prometheus_port {port} cannot be bound on {host!r}: {e}') from e
    bound_port = server.server_port
    return reader, server, thread, http_url(host, bound_port, '/metrics')
