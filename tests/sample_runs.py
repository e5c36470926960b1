"""Spans made by running a real tracegraph graph on a fixed clock, for the exporter and dashboard tests.

The spans come from the engine and its instrumentation, so they follow the span contract by construction; only the
clock is ours. While a sample run executes, the OpenTelemetry SDK's `time_ns` reads a `FixedClock` that moves only
when the run says so: 1 ms passes between steps, node `i` lasts `10 * i` ms, so every start, end and duration is
known in advance. Nothing else in the process should make spans meanwhile (the tests do not).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Union

import opentelemetry.sdk.trace as sdk_trace
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

import tracegraph.run as engine_run
import tracegraph.tracing.instrument as instrument
from tracegraph import BaseNode, End, Graph, GraphRun, GraphRunContext, InstrumentationSettings

__all__ = ('MS', 'FixedClock', 'SampleRunResult', 'reading_clock', 'run_sample_graph')

MS = 1_000_000
"""One millisecond in nanoseconds."""

_clock_lock = threading.Lock()


@dataclass
class FixedClock:
    """A wall clock in nanoseconds that moves only by `advance`."""

    now: int

    def advance(self, ns: int) -> None:
        self.now += ns

    def __call__(self) -> int:
        return self.now


@contextmanager
def reading_clock(clock: FixedClock) -> Generator[None]:
    """Make the SDK, the engine and its tracing read `clock` (they read their own names for speed: no hook there)."""

    def wall(tz: tzinfo | None = None) -> datetime:
        return datetime.fromtimestamp(clock.now // 1000 / 1e6, tz)

    with _clock_lock:
        saved = sdk_trace.time_ns, engine_run._now, engine_run._perf_ns, instrument._now_ns  # pyright: ignore[reportPrivateImportUsage, reportPrivateUsage]
        sdk_trace.time_ns = clock  # pyright: ignore[reportPrivateImportUsage]  # read at each span start, end, event
        engine_run._now, engine_run._perf_ns, instrument._now_ns = wall, clock, clock  # pyright: ignore[reportPrivateUsage]
        try:
            yield
        finally:
            sdk_trace.time_ns, engine_run._now, engine_run._perf_ns, instrument._now_ns = saved  # pyright: ignore[reportPrivateImportUsage, reportPrivateUsage]


@dataclass(kw_only=True)
class _Plan:
    steps: Sequence[str]
    fail: bool
    error: str
    nested_calls: bool
    clock: FixedClock
    tracer: Tracer
    classes: dict[str, type[_Step]] = field(default_factory=dict[str, Any])
    run: GraphRun[None, _Plan, int] | None = None


@dataclass
class _Step(BaseNode[None, '_Plan', int]):
    """Step `n` (1-based) of the plan: lasts `10 * n` ms, then goes to the plan's next step or ends."""

    n: int

    async def step(self, ctx: GraphRunContext[None, _Plan]) -> BaseNode[None, _Plan, int] | End[int]:
        plan, clock = ctx.deps, ctx.deps.clock
        duration = 10 * self.n * MS
        if self.n == 2 and plan.nested_calls:
            clock.advance(2 * MS)
            with plan.tracer.start_as_current_span('call model', attributes={'model': 'm1'}):
                clock.advance(MS)
                with plan.tracer.start_as_current_span('http POST'):
                    clock.advance(2 * MS)
                clock.advance(3 * MS)
            clock.advance(duration - 8 * MS)
        else:
            clock.advance(duration)
        last = self.n == len(plan.steps)
        if last and plan.fail:
            raise ValueError(plan.error)
        if last:
            return End(self.n)
        return plan.classes[plan.steps[self.n]](n=self.n + 1)


def _node_classes(steps: Sequence[str]) -> dict[str, type[_Step]]:
    """One node class per distinct step name, whose `run` hint lists every class (and `End`) as a next node."""
    classes: dict[str, type[_Step]] = {}
    for name in dict.fromkeys(steps):

        async def run(self: _Step, ctx: GraphRunContext[None, _Plan]) -> Any:
            return await self.step(ctx)

        classes[name] = dataclass(type(name, (_Step,), {'run': run, '__qualname__': name}))
    hint: Any = Union[(*classes.values(), End[int])]
    for cls in classes.values():
        cls.run.__annotations__ = {'ctx': GraphRunContext[None, _Plan], 'return': hint}
    return classes


@dataclass(kw_only=True)
class SampleRunResult:
    """What one sample run made: its ids and the (node id, seconds) of each step."""

    graph: str
    run_id: str
    trace_id: str
    run_span_id: str
    nodes: list[tuple[str, float]]
    node_span_ids: list[int]
    outcome: str


async def _drive(graph: Graph[None, _Plan, int], plan: _Plan) -> None:
    first = plan.classes[plan.steps[0]](n=1)
    try:
        async with graph.iter(first, deps=plan) as run:
            plan.run = run
            node: BaseNode[None, _Plan, int] | End[int] = first
            while not isinstance(node, End):
                plan.clock.advance(MS)  # 1 ms between the run's start or the last step and the next step
                try:
                    node = await run.next(node)
                except ValueError:
                    plan.clock.advance(MS)  # and 1 ms from the last step's end to the run's
                    raise
            plan.clock.advance(MS)
    except ValueError as exc:
        if str(exc) != plan.error:
            raise


def run_sample_graph(
    provider: TracerProvider,
    *,
    graph: str = 'sample',
    steps: Sequence[str] = ('Fetch', 'Think', 'Answer'),
    fail: bool = False,
    error: str = 'the answer is not 42',
    nested_calls: bool = True,
    start_ns: int | None = None,
    parent: Context | None = None,
) -> SampleRunResult:
    """Run a graph named `graph` through `steps`, its spans going to `provider`, on a clock starting at `start_ns`.

    With `fail`, the last step raises `ValueError(error)`. With `nested_calls`, the second step opens a user span
    `call model` (2–8 ms into it) with a child `http POST` (3–5 ms). `parent` is the context the run joins.
    """
    # On a whole microsecond: the engine's step start (a datetime) and the spans' clock then read the same instant.
    clock = FixedClock((start_ns if start_ns is not None else time.time_ns()) // 1000 * 1000)
    plan = _Plan(
        steps=steps,
        fail=fail,
        error=error,
        nested_calls=nested_calls,
        clock=clock,
        tracer=provider.get_tracer('sample-user-code'),
        classes=_node_classes(steps),
    )
    settings = InstrumentationSettings(tracer_provider=provider, metrics=False)
    sample = Graph(nodes=tuple(plan.classes.values()), name=graph, instrumentation=settings)
    token = otel_context.attach(parent) if parent is not None else None
    try:
        with reading_clock(clock):
            _run_coroutine(_drive(sample, plan))
    finally:
        if token is not None:
            otel_context.detach(token)
    run = plan.run
    assert run is not None
    assert run.trace_id is not None
    assert run.traceparent is not None
    steps_done = run.timeline.nodes
    return SampleRunResult(
        graph=graph,
        run_id=run.run_id,
        trace_id=run.trace_id,
        run_span_id=run.traceparent.split('-')[2],
        nodes=[(n.node_id, n.duration) for n in steps_done],
        node_span_ids=[int(n.span_id, 16) for n in steps_done if n.span_id is not None],
        outcome='failed' if fail else 'completed',
    )


def _run_coroutine(coro: Any) -> None:
    """Run `coro` to the end, on a fresh event loop (in a helper thread if this thread already runs one)."""
    try:
        asyncio.get_running_loop()
        in_a_loop = True
    except RuntimeError:
        in_a_loop = False
    if not in_a_loop:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(coro)
        finally:
            loop.close()
        return
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
