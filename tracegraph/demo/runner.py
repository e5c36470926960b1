"""Runs the demo's example graphs, the way applications run them, and returns their timelines."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..nodes import End
from ..persistence.file import FileStatePersistence
from ..tracing.timeline import NodeTimeline
from .graphs import (
    AgentDeps,
    AgentState,
    AwaitApproval,
    Decision,
    Expense,
    Fetch,
    FetchState,
    ModelResponse,
    ReadTemperature,
    Room,
    ScriptedModel,
    SubmitExpense,
    ToolCall,
    UpstreamError,
    UserPromptNode,
    expense_approval,
    flaky_fetch,
    thermostat,
    weather_agent,
)

__all__ = ('DEMO_RUNS', 'run_demo')

DEMO_RUNS = 3 + 8 + 12 + 2 + 2
"""How many graph runs `run_demo` makes (for a progress bar)."""


async def _thermostat(start: float) -> NodeTimeline:
    async with thermostat.iter(ReadTemperature(), state=Room(temperature=start)) as run:
        async for _ in run:
            pass
    return run.timeline


async def _fetch(seed: int) -> NodeTimeline:
    async with flaky_fetch.iter(Fetch('https://api.example.com/items'), state=FetchState(seed)) as run:
        try:
            async for _ in run:
                pass
        except UpstreamError:
            pass  # a failed run is part of the demo: its timeline and spans show the failure
    return run.timeline


async def _agent(city: str) -> NodeTimeline:
    model = ScriptedModel(
        [
            ModelResponse(tool_calls=[ToolCall('get_weather', {'city': city})]),
            ModelResponse(text=f'It is 18°C with light rain in {city}: take an umbrella.'),
        ]
    )
    prompt = UserPromptNode(f'What should I wear in {city} today?')
    # Driven node by node, as an agent framework drives its loop.
    async with weather_agent.iter(prompt, state=AgentState(), deps=AgentDeps(model=model)) as run:
        node = run.next_node
        while not isinstance(node, End):
            node = await run.next(node)
    return run.timeline


async def _expense(folder: Path) -> list[NodeTimeline]:
    """An approval flow interrupted to wait for a manager, then resumed from its file: two runs, one story."""
    persistence = FileStatePersistence(folder / 'expense-ada.json')
    async with expense_approval.iter(
        SubmitExpense(), state=Expense(employee='ada', amount=42.5), persistence=persistence
    ) as first:
        async for node in first:
            if isinstance(node, AwaitApproval):
                break  # no decision yet: the process could stop here; the snapshot waits in the file
    # ... later, maybe in another process, the manager decides: the run continues from the file, its trace linked.
    decision = Decision(approve=True, manager='grace')
    async with expense_approval.iter_from_persistence(persistence, deps=decision) as second:
        async for _ in second:
            pass
    return [first.timeline, second.timeline]


async def run_demo(on_run: Callable[[NodeTimeline], None] = lambda _: None) -> list[NodeTimeline]:
    """Run every demo graph and return their timelines in the order they finished.

    Args:
        on_run: called with each run's timeline as soon as the run ends (e.g. to advance a progress bar).
    """
    timelines: list[NodeTimeline] = []

    async def record(job: asyncio.Future[NodeTimeline] | asyncio.Task[NodeTimeline]) -> None:
        timeline = await job
        timelines.append(timeline)
        on_run(timeline)

    for start in (15.0, 27.5, 21.2):
        await record(asyncio.ensure_future(_thermostat(start)))
    for seed in range(8):
        await record(asyncio.ensure_future(_fetch(seed)))
    # Concurrent runs on one loop: each keeps its own spans.
    concurrent = [asyncio.ensure_future(_thermostat(10.0 + i * 2)) for i in range(6)]
    concurrent += [asyncio.ensure_future(_fetch(100 + i)) for i in range(6)]
    await asyncio.gather(*(record(job) for job in concurrent))
    for city in ('Lisbon', 'Oslo'):
        await record(asyncio.ensure_future(_agent(city)))
    with tempfile.TemporaryDirectory(prefix='tracegraph-demo-') as folder:
        for timeline in await _expense(Path(folder)):
            timelines.append(timeline)
            on_run(timeline)
    return timelines
