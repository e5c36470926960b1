"""Exporters: one-call setup, OTLP over HTTP and gRPC, a durable spool, JSON Lines files, console and test capture.

Importing this package is cheap and needs only the core dependencies: the OpenTelemetry SDK and the
exporters are imported on first use of a name below (`pip install 'tracegraph[otlp]'`). The pytest plugin
(`tracegraph.exporters.testing.pytest_plugin`) is loaded by every pytest run, so this must never fail.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .local.console import ConsoleTimelineProcessor
    from .local.jsonlines import JsonLinesSpanExporter, read_spans
    from .pipeline import MetricsOptions, SpoolOptions, Telemetry, configure
    from .settings import ConfigurationError
    from .spool.exporter import SpoolSpanExporter
    from .testing.capture import MetricPoint, TelemetryCapture

__all__ = (
    'configure',
    'Telemetry',
    'SpoolOptions',
    'MetricsOptions',
    'ConfigurationError',
    'SpoolSpanExporter',
    'JsonLinesSpanExporter',
    'read_spans',
    'ConsoleTimelineProcessor',
    'TelemetryCapture',
    'MetricPoint',
)

_LAZY: dict[str, str] = {
    'configure': 'pipeline',
    'Telemetry': 'pipeline',
    'SpoolOptions': 'pipeline',
    'MetricsOptions': 'pipeline',
    'ConfigurationError': 'settings',
    'SpoolSpanExporter': 'spool.exporter',
    'JsonLinesSpanExporter': 'local.jsonlines',
    'read_spans': 'local.jsonlines',
    'ConsoleTimelineProcessor': 'local.console',
    'TelemetryCapture': 'testing.capture',
    'MetricPoint': 'testing.capture',
}


EXTRA_HINT = "pip install 'tracegraph[otlp]'"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    try:
        imported = importlib.import_module(f'{__name__}.{module}')
    except ModuleNotFoundError as e:
        if e.name is None or e.name.startswith('tracegraph'):
            raise
        # a core install has the OpenTelemetry API only: say which extra brings the SDK and the exporters
        raise ModuleNotFoundError(
            f"tracegraph.exporters.{name} needs the 'otlp' extra ({e.name} is not installed): {EXTRA_HINT}",
            name=e.name,
        ) from None
    return getattr(imported, name)


def __dir__() -> list[str]:
    return sorted(__all__)
