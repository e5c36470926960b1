"""`configure()`: one call that builds tracegraph's OpenTelemetry pipeline, and the `Telemetry` handle it returns."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal, cast

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.metrics._internal import _ProxyMeterProvider  # pyright: ignore[reportPrivateUsage] - no public name
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from .._version import __version__
from ..tracing.scrubbing import Scrubber, ScrubbingOptions
from .drops import CountingBatchSpanProcessor, DropCounter
from .metrics.views import metric_views
from .otlp.sdk_exporters import otlp_metric_exporter, otlp_span_exporter
from .providers import AttachedProcessors, ProcessorHost, global_host, place_processors
from .settings import (
    EXPORT_PROCESS_ENV,
    GRPC_FEATURE,
    ConfigurationError,
    OtlpTarget,
    check_file,
    check_spool_dir,
    disabled_by_env,
    export_process_from_env,
    exporters_from_env,
    http_url,
    otlp_requested,
    require_extra,
    resolve_target,
)

if TYPE_CHECKING:
    from .spool.exporter import SpoolSpanExporter

__all__ = ('configure', 'Telemetry', 'SpoolOptions', 'MetricsOptions', 'SPOOL_SCHEDULE_DELAY_MILLIS')

logger = logging.getLogger('tracegraph.exporters')
_announced_existing = threading.Event()


@dataclass(frozen=True, kw_only=True)
class SpoolOptions:
    """`configure(spool=SpoolOptions(directory=...))`: send spans through a durable disk spool instead of directly
    (see `SpoolSpanExporter`; workers of one app may share the directory)."""

    directory: str | PathLike[str]
    max_bytes: int = 256 * 1024 * 1024
    """Bound on the spool's disk use; the oldest spans are dropped (and counted) beyond it."""


@dataclass(frozen=True, kw_only=True)
class MetricsOptions:
    """`configure(metrics=MetricsOptions(...))`: tracegraph's metrics, over OTLP and optionally Prometheus.
    `metrics=True` is `MetricsOptions()`."""

    prometheus_port: int | None = None
    """Also serve metrics at `http://{prometheus_host}:{prometheus_port}/metrics` (0 picks a free port; see
    `Telemetry.prometheus_url`)."""
    prometheus_host: str = '127.0.0.1'
    """Address the Prometheus endpoint binds; loopback unless you say otherwise."""


@dataclass(kw_only=True)
class _PrometheusEndpoint:
    url: str
    server: Any
    thread: threading.Thread

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@dataclass(kw_only=True)
class Telemetry:
    """The pipeline `configure()` built: providers, processors, and how to flush and stop them.

    Use it as a context manager to shut it down at the end of a block; otherwise it is flushed and shut down
    when the interpreter exits.
    """

    tracer_provider: trace.TracerProvider
    """The SDK `TracerProvider` built, or the existing global provider the processors were added to."""
    meter_provider: MeterProvider | None
    """The SDK `MeterProvider` built (None with `metrics=False`)."""
    span_processors: list[SpanProcessor]
    """The processors configure() created, in the order spans reach them."""
    owns_tracer_provider: bool
    """False when the processors were added to a provider that was already global (e.g. Logfire's)."""
    spool: SpoolSpanExporter | None = None
    """The spool exporter when `spool_dir` was given (see its `pending_spans`, `dropped_spans`)."""
    drops: DropCounter = field(default_factory=DropCounter)
    """Spans the batch processors dropped (queue full) or failed to export, by reason."""
    _attached: AttachedProcessors | None = None
    _prometheus: _PrometheusEndpoint | None = None
    _closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach_prometheus(self, endpoint: _PrometheusEndpoint | None) -> None:
        """Own the Prometheus endpoint `configure()` started: it is closed with this handle."""
        self._prometheus = endpoint

    @property
    def prometheus_url(self) -> str | None:
        """`http://host:port/metrics` when `MetricsOptions.prometheus_port` was given."""
        return None if self._prometheus is None else self._prometheus.url

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
            ok = cast(ProcessorHost, self.tracer_provider).force_flush(timeout_millis)
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
            cast(ProcessorHost, self.tracer_provider).shutdown()
        elif self._attached is not None:
            self._attached.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()
        if self._prometheus is not None:
            self._prometheus.close()

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
    service_version: str | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: dict[str, str] | str | None = None,
    console: bool | IO[str] = False,
    file: str | PathLike[str] | None = None,
    spool: SpoolOptions | None = None,
    metrics: bool | MetricsOptions = True,
    set_global: bool = True,
    export_process: bool | None = None,
) -> Telemetry:
    """Build tracer and meter providers that send tracegraph's spans and metrics where you say.

    Args:
        service_name: `service.name` of the resource (else `OTEL_SERVICE_NAME`, else the SDK default).
        service_version: `service.version` of the resource.
        endpoint: OTLP base URL, e.g. `http://localhost:4318` (else the `OTEL_EXPORTER_OTLP_*ENDPOINT`
            variables). OTLP export is on when an endpoint is known, with `spool`, or when no other
            output (console, file, Prometheus) was asked for; it defaults to `http://localhost:4318`
            (`http://localhost:4317` for gRPC).
        protocol: `http/protobuf` (default) or `grpc` (else `OTEL_EXPORTER_OTLP_*PROTOCOL`).
        headers: OTLP headers as a dict or `k1=v1,k2=v2` (else `OTEL_EXPORTER_OTLP_*HEADERS`).
        console: print each run's timeline when it ends (True: to standard error; or a text stream).
        file: append every span to this JSON Lines file (OTLP/JSON).
        spool: send spans through a durable spool (see `SpoolOptions`) instead of directly.
        metrics: build a `MeterProvider` exporting tracegraph's metrics over OTLP (and Prometheus, see
            `MetricsOptions`); False for none.
        set_global: install the providers as OpenTelemetry's global ones, which tracegraph uses.
        export_process: True: encode and send OTLP spans from a child process (`OffloadSpanProcessor`), so the
            exporter never holds this process's GIL while a graph steps (see docs/exporters.md for what it costs
            and gains). Not with `spool`. None (the default): `TRACEGRAPH_EXPORT_PROCESS`, else False: the SDK's
            batch processor and OTLP exporter, in process, configured by the standard `OTEL_*` variables.

    Raises:
        ConfigurationError: for a bad setting, naming it and its value, before anything is built.
    """
    metric_options = MetricsOptions() if metrics is True else metrics or None
    port = metric_options.prometheus_port if metric_options else None
    # --- validate everything first: a bad setting must not leave half a pipeline behind ---
    trace_exporters, metric_exporters = exporters_from_env('traces'), exporters_from_env('metrics')
    if (off := disabled_by_env()) is not None:
        logger.info('tracegraph: %s is set: configure() builds no exporters', off)
        return Telemetry(tracer_provider=trace.NoOpTracerProvider(), meter_provider=None, span_processors=[],
                         owns_tracer_provider=False)  # fmt: skip
    use_otlp = otlp_requested(endpoint) or spool is not None or not (console or file is not None or port is not None)
    otlp_traces = use_otlp if trace_exporters is None else 'otlp' in trace_exporters
    otlp_metrics = use_otlp if metric_exporters is None else 'otlp' in metric_exporters
    console = console or bool(trace_exporters and 'console' in trace_exporters)
    trace_target = resolve_target(endpoint=endpoint, protocol=protocol, headers=headers, signal='traces')
    metric_target = resolve_target(endpoint=endpoint, protocol=protocol, headers=headers, signal='metrics')
    spool_path = check_spool_dir(spool.directory, 'SpoolOptions.directory') if spool is not None else None
    file_path = check_file(file) if file is not None else None
    otlp_traces = otlp_traces and not (endpoint is None and spool is None and set_global and _agent_exports_spans())
    offload = _choose_export_process(export_process, spool, otlp_traces, trace_exporters)
    if spool is not None and spool.max_bytes <= 0:
        raise ConfigurationError(f'SpoolOptions.max_bytes must be positive, got {spool.max_bytes!r}.')
    if port is not None and not (isinstance(port, int) and 0 <= port <= 65535):
        raise ConfigurationError(f'MetricsOptions.prometheus_port must be an integer from 0 to 65535, got {port!r}.')
    _require_extras(
        grpc=((otlp_traces or spool is not None) and trace_target.protocol == 'grpc')
        or (metric_options is not None and otlp_metrics and metric_target.protocol == 'grpc'),
        prometheus=port is not None,
    )
    if set_global:
        global_host(_GLOBAL_PURPOSE, _GLOBAL_REMEDY)

    resource = _resource(service_name, service_version)
    prometheus: _PrometheusEndpoint | None = None
    meter_provider: MeterProvider | None = None
    if metric_options is not None:
        readers: list[MetricReader] = []
        if port is not None:  # first: binding the port is the one step here that can still fail
            reader, prometheus = _prometheus(metric_options.prometheus_host, port)
            readers.append(reader)
        if otlp_metrics:
            readers.append(PeriodicExportingMetricReader(otlp_metric_exporter(metric_target)))
        if metric_exporters and 'console' in metric_exporters:
            from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
        meter_provider = MeterProvider(
            resource=resource, metric_readers=readers, views=metric_views(), shutdown_on_exit=False
        )
    drops = DropCounter()
    if meter_provider is not None:
        drops.register(meter_provider)
    try:
        spool_exporter = _spool(spool_path, spool, trace_target, meter_provider)
    except BaseException:
        if meter_provider is not None:
            meter_provider.shutdown()
        if prometheus is not None:
            prometheus.close()
        raise
    processors = _span_processors(
        console, file_path, spool_exporter, trace_target if otlp_traces else None, drops, offload
    )
    if not processors and trace_exporters == frozenset():  # asked for: said, not warned
        logger.info('tracegraph: OTEL_TRACES_EXPORTER=none: configure() built no span exporter, as asked')
    elif not processors:
        logger.warning(
            'tracegraph: configure() built no span exporter, so spans go nowhere: pass endpoint= (or set '
            'OTEL_EXPORTER_OTLP_ENDPOINT), file=, console= or spool= to send them'
        )
    telemetry = _install(resource, processors, meter_provider, set_global=set_global)
    telemetry.spool, telemetry.drops = spool_exporter, drops
    telemetry.attach_prometheus(prometheus)
    atexit.register(telemetry.shutdown)
    return telemetry


_Offload = Literal['required', 'off']


def _require_extras(*, grpc: bool, prometheus: bool) -> None:
    """The extras beyond `[otlp]` (OTLP over HTTP) that the chosen outputs need, named before anything is built."""
    if grpc:
        modules = ('grpc', 'opentelemetry.exporter.otlp.proto.grpc')
        require_extra('grpc', GRPC_FEATURE, modules=modules)
    if prometheus:
        modules = ('prometheus_client', 'opentelemetry.exporter.prometheus')
        require_extra('prometheus', 'MetricsOptions.prometheus_port', modules=modules)


_AGENT_MODULE = 'opentelemetry.instrumentation.auto_instrumentation'
"""What `opentelemetry-instrument` loads (through `sitecustomize`) before the app's first line."""


def _agent_exports_spans() -> bool:
    """Whether the zero-code agent set the global TracerProvider and exports spans from it over OTLP (said once).

    Its provider already sends every span, ours too, to the same `OTEL_*` endpoint: a second exporter of ours would
    send each one twice, so `configure()` joins the provider without one.
    """
    if _AGENT_MODULE not in sys.modules or global_host(_GLOBAL_PURPOSE, _GLOBAL_REMEDY) is None:
        return False
    if 'otlp' not in {e.strip() for e in os.environ.get('OTEL_TRACES_EXPORTER', 'otlp').split(',')}:
        return False
    logger.warning(
        'tracegraph: the zero-code agent (opentelemetry-instrument) already exports spans to the '
        'OTEL_EXPORTER_OTLP_* endpoint; configure() joins its TracerProvider without a second OTLP exporter '
        '(pass endpoint= to send to another backend as well)'
    )
    return True


def _choose_export_process(
    export_process: bool | None,
    spool: SpoolOptions | None,
    otlp_traces: bool,
    trace_exporters: frozenset[str] | None,
) -> _Offload:
    """Whether OTLP spans go through a child process: only when asked for (the argument, else the variable); the
    SDK's batch processor and exporter otherwise, so every `OTEL_*` setting they honour applies."""
    from .process.offload import why_no_export_process

    chosen = export_process if export_process is not None else export_process_from_env()
    if not chosen:
        return 'off'
    setting = 'export_process=True' if export_process else f'{EXPORT_PROCESS_ENV}={os.environ[EXPORT_PROCESS_ENV]}'
    if spool is not None:
        raise ConfigurationError(
            f'{setting} and spool= both choose who sends the spans: the spool sends them itself; pass one.'
        )
    if not otlp_traces:
        raise ConfigurationError(
            f'{setting} sends OTLP spans from a child process, but no OTLP span export is configured '
            f'(OTEL_TRACES_EXPORTER={",".join(sorted(trace_exporters or ())) or "none"}).'
        )
    if (reason := why_no_export_process()) is not None:
        raise ConfigurationError(f'{setting} cannot start the export process here: {reason}.')
    return 'required'


_GLOBAL_PURPOSE = 'set_global=True'
_GLOBAL_REMEDY = 'pass set_global=False and use the returned providers.'


def _spool(
    path: Path | None, options: SpoolOptions | None, target: OtlpTarget, meter_provider: MeterProvider | None
) -> SpoolSpanExporter | None:
    if path is None or options is None:
        return None
    from .spool.exporter import SpoolSpanExporter
    from .spool.segments import SpoolLockedError

    try:
        return SpoolSpanExporter(path, target=target, max_bytes=options.max_bytes, meter_provider=meter_provider)
    except SpoolLockedError as e:
        raise ConfigurationError(str(e)) from e


def _span_processors(
    console: bool | IO[str],
    file_path: Path | None,
    spool: SpoolSpanExporter | None,
    otlp: OtlpTarget | None,
    drops: DropCounter,
    offload: _Offload = 'off',
) -> list[SpanProcessor]:
    processors: list[SpanProcessor] = []
    if console:
        from .local.console import ConsoleTimelineProcessor

        processors.append(ConsoleTimelineProcessor(None if console is True else console))
    if file_path is not None:
        from .local.jsonlines import JsonLinesSpanExporter

        processors.append(CountingBatchSpanProcessor(JsonLinesSpanExporter(file_path), drops))
    if spool is not None:
        # The spool's point is to survive a crash: a span waits at most this long in memory before it is on disk.
        processors.append(CountingBatchSpanProcessor(spool, drops, schedule_delay_millis=SPOOL_SCHEDULE_DELAY_MILLIS))
    elif otlp is not None and offload == 'required':
        from .process.offload import OffloadSpanProcessor

        processors.append(OffloadSpanProcessor(otlp, drops=drops))
    elif otlp is not None:
        processors.append(CountingBatchSpanProcessor(otlp_span_exporter(otlp), drops))
    return processors


def _install(
    resource: Resource, processors: list[SpanProcessor], meter_provider: MeterProvider | None, *, set_global: bool
) -> Telemetry:
    def ours() -> TracerProvider:
        return TracerProvider(resource=resource, shutdown_on_exit=False)

    if set_global:
        placed = place_processors(processors, ours, purpose=_GLOBAL_PURPOSE, remedy=_GLOBAL_REMEDY)
        if not placed.owned and not _announced_existing.is_set():
            _announced_existing.set()
            logger.info(
                'tracegraph: a global TracerProvider (%s) already exists; adding tracegraph exporters to it '
                'instead of replacing it',
                type(placed.provider).__name__,
            )
        provider, owned, attached = placed.provider, placed.owned, placed.attached
    else:
        provider, owned, attached = ours(), True, None
        for processor in processors:
            provider.add_span_processor(processor)
    if set_global and owned:
        _watch_for_a_later_provider()
    if set_global and meter_provider is not None:
        if isinstance(otel_metrics.get_meter_provider(), _ProxyMeterProvider):
            otel_metrics.set_meter_provider(meter_provider)
        else:
            logger.info(
                'tracegraph: a global MeterProvider already exists; tracegraph metrics go to it, '
                'not to the exporters configure() built'
            )
    return Telemetry(
        tracer_provider=cast(trace.TracerProvider, provider),  # the SDK's, or an app's that takes processors
        meter_provider=meter_provider,
        span_processors=processors,
        owns_tracer_provider=owned,
        _attached=attached,
    )


LATE_PROVIDER_MESSAGE = (
    'tracegraph: another library (Logfire?) tried to install its TracerProvider after '
    'tracegraph.exporters.configure() had installed one; OpenTelemetry keeps the first, so graph spans do not reach '
    'the other library. Call logfire.configure() (or the other setup) first: configure() then adds its exporters to '
    'that provider. Or pass set_global=False to configure() and give graphs its tracer_provider.'
)


class _LateProviderWatch(logging.Filter):
    """Turns OpenTelemetry's terse 'Overriding of current TracerProvider is not allowed' into what to do."""

    def filter(self, record: logging.LogRecord) -> bool:
        if 'Overriding of current TracerProvider' in record.getMessage():
            logger.error(LATE_PROVIDER_MESSAGE)
        return True


_watch = _LateProviderWatch()


def _watch_for_a_later_provider() -> None:
    otel_logger = logging.getLogger('opentelemetry.trace')
    if _watch not in otel_logger.filters:
        otel_logger.addFilter(_watch)


def _resource(service_name: str | None, service_version: str | None) -> Resource:
    attributes: dict[str, str] = {'telemetry.distro.name': 'tracegraph', 'telemetry.distro.version': __version__}
    if service_name:
        attributes['service.name'] = service_name
    if service_version:
        attributes['service.version'] = service_version
    resource = Resource.create(attributes)
    # `OTEL_RESOURCE_ATTRIBUTES` may carry a `db.password`: it goes out with every span, so it is scrubbed too.
    return Resource(Scrubber(ScrubbingOptions()).scrub(dict(resource.attributes)), resource.schema_url)


def _prometheus(host: str, port: int) -> tuple[MetricReader, _PrometheusEndpoint]:
    import prometheus_client  # the `prometheus` extra: checked by configure() before anything is built
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    # A registry per configure() call: a second call (or a test) must not collide in the process-wide one.
    registry = prometheus_client.CollectorRegistry()
    prometheus_client.ProcessCollector(registry=registry)
    prometheus_client.GCCollector(registry=registry)
    reader = PrometheusMetricReader(registry=registry)
    try:
        server, thread = prometheus_client.start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        raise ConfigurationError(f'MetricsOptions.prometheus_port {port} cannot be bound on {host!r}: {e}') from e
    return reader, _PrometheusEndpoint(url=http_url(host, server.server_port, '/metrics'), server=server, thread=thread)
