"""Where tracegraph's span processors go: the one policy `configure()` and the test capture both follow.

When the app already has a global SDK `TracerProvider` (its own, Logfire's), tracegraph adds its processors to it:
OpenTelemetry lets a process set the global provider once, so replacing it would leave the app's spans and ours in
different pipelines. Otherwise a provider of ours is made and set as the global one. A global provider that takes no
processors (a custom API implementation) is refused with an error that says what to do instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, SynchronousMultiSpanProcessor

from .settings import ConfigurationError

__all__ = ('ProcessorHost', 'Placed', 'AttachedProcessors', 'global_host', 'place_processors')


@runtime_checkable
class ProcessorHost(Protocol):
    """A tracer provider that takes span processors: the SDK's, or one wrapping it (Logfire's)."""

    def add_span_processor(self, span_processor: SpanProcessor) -> None: ...
    def force_flush(self, timeout_millis: int = 30000) -> bool: ...
    def shutdown(self) -> None: ...


class AttachedProcessors(SynchronousMultiSpanProcessor):
    """Our processors inside a provider we do not own: it cannot remove them, so they switch off on shutdown."""

    def __init__(self, processors: Sequence[SpanProcessor] = ()) -> None:
        super().__init__()
        self.enabled = True
        for processor in processors:
            self.add_span_processor(processor)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self.enabled:
            super().on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self.enabled:
            super().on_end(span)

    def shutdown(self) -> None:
        self.enabled = False
        super().shutdown()


@dataclass(frozen=True, kw_only=True)
class Placed:
    """Where `place_processors` put the processors."""

    provider: ProcessorHost
    owned: bool
    """True: a provider made for them (set as the global one); False: the app's global provider."""
    attached: AttachedProcessors | None
    """The processors as added to the app's provider (None when the provider is ours)."""


def global_host(purpose: str, remedy: str) -> ProcessorHost | None:
    """The app's global tracer provider when it takes processors; None when there is none yet.

    Raises:
        ConfigurationError: the global provider takes no span processors (`purpose` and `remedy` say what failed
            and what to do).
    """
    current = trace.get_tracer_provider()
    if isinstance(current, trace.ProxyTracerProvider):
        return None
    if not isinstance(current, ProcessorHost):
        raise ConfigurationError(
            f'{purpose}, but the global TracerProvider is a {type(current).__name__}, which does not accept span '
            f'processors; {remedy}'
        )
    return current


def place_processors(
    processors: Sequence[SpanProcessor], make_provider: Callable[[], ProcessorHost], *, purpose: str, remedy: str
) -> Placed:
    """Add `processors` to the app's global provider, or to `make_provider()`, which becomes the global one."""
    host = global_host(purpose, remedy)
    if host is not None:
        attached = AttachedProcessors(processors)
        host.add_span_processor(attached)
        return Placed(provider=host, owned=False, attached=attached)
    provider = make_provider()
    for processor in processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)  # pyright: ignore[reportArgumentType]
    return Placed(provider=provider, owned=True, attached=None)
