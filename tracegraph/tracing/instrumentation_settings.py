"""`InstrumentationSettings`: what tracegraph records about a graph's runs, and where it sends it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .scrubbing import ScrubbingOptions
from .semconv import SEMCONVS, Semconv

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ('InstrumentationSettings', 'StateRecording')

StateRecording = Literal['none', 'diff', 'full']
"""How much of the run's state a node span records: nothing, the fields the node changed, or all of it."""


@dataclass(kw_only=True)
class InstrumentationSettings:
    """What tracegraph records about a graph's runs.

    Example:
        ```python
        from tracegraph import InstrumentationSettings, ScrubbingOptions

        settings = InstrumentationSettings(state='diff', scrub=ScrubbingOptions(extra_patterns=['ticket']))
        print(settings.state, settings.max_attribute_length)
        #> diff 4096
        ```
    """

    tracer_provider: TracerProvider | None = None
    """Where spans go; None: the global tracer provider at the time each run starts."""
    meter_provider: MeterProvider | None = None
    """Where metrics go; None: the global meter provider at the time each run starts."""
    include_node_input: bool = True
    """Record the node's fields as JSON in `tracegraph.node.input`."""
    state: StateRecording = 'none'
    """Record the state around each node: `'diff'` in `tracegraph.state.diff`, `'full'` in
    `tracegraph.state.before` / `tracegraph.state.after`."""
    max_attribute_length: int = 4096
    """JSON attributes longer than this are cut, ending in `...[truncated]`."""
    scrub: bool | ScrubbingOptions = True
    """Replace values whose key looks secret with `[Scrubbed]` (`False` turns it off; options add patterns)."""
    metrics: bool = True
    """Record the `tracegraph.node.duration`, `tracegraph.run.duration` and `tracegraph.run.steps` metrics."""
    semconv: Sequence[Semconv] = ()
    """Agent conventions to write as well: `'gen_ai'` (OpenTelemetry GenAI agent spans) and/or `'openinference'`
    (Arize OpenInference); see `tracegraph.tracing.semconv`."""
    agent_name: str | None = None
    """`gen_ai.agent.name` of the runs (with `semconv=('gen_ai',)`); the graph's name by default."""

    def __post_init__(self) -> None:
        if self.state not in ('none', 'diff', 'full'):
            raise ValueError(f"`state` must be 'none', 'diff' or 'full', not {self.state!r}.")
        unknown = [s for s in self.semconv if s not in SEMCONVS]
        if isinstance(self.semconv, str) or unknown:
            shown = self.semconv if isinstance(self.semconv, str) else unknown[0]
            raise ValueError(f"`semconv` must be a sequence of 'gen_ai' and 'openinference', not {shown!r}.")
        if self.max_attribute_length < 16:
            raise ValueError(f'`max_attribute_length` must be at least 16, not {self.max_attribute_length}.')
