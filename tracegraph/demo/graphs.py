"""The demo's example graphs: a looping state machine, a flaky fetch with retries, an agent loop, and an approval
flow that is interrupted to wait for a person and resumed from its persisted snapshots.

Each node sleeps a few milliseconds so their timelines have something to show; randomness is seeded per run,
so a demo run is repeatable.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Annotated, Any

from opentelemetry import trace

from ..graph import Graph
from ..nodes import BaseNode, Edge, End, GraphRunContext
from ..tracing.instrumentation_settings import InstrumentationSettings

SHOW_STATE = InstrumentationSettings(state='diff')
"""The demo's graphs record what each step changed in the state, so the dashboard shows it step by step."""

__all__ = (
    'Room',
    'ReadTemperature',
    'Heat',
    'Cool',
    'thermostat',
    'FetchState',
    'Fetch',
    'Backoff',
    'Parse',
    'UpstreamError',
    'flaky_fetch',
    'ScriptedModel',
    'ModelResponse',
    'ToolCall',
    'AgentDeps',
    'AgentState',
    'UserPromptNode',
    'ModelRequestNode',
    'CallToolsNode',
    'weather_agent',
    'Expense',
    'Decision',
    'SubmitExpense',
    'AwaitApproval',
    'PayOut',
    'expense_approval',
)

_tracer = trace.get_tracer('tracegraph.demo')


# --- a looping state machine -------------------------------------------------------------------------------


@dataclass
class Room:
    """The thermostat's state: the temperature now and the one wanted."""

    temperature: float
    target: float = 21.0
    readings: int = 0


@dataclass
class ReadTemperature(BaseNode[Room, None, float]):
    """Read the sensor and decide whether to heat, cool, or stop."""

    async def run(self, ctx: GraphRunContext[Room]) -> Heat | Cool | Annotated[End[float], Edge('settled')]:
        await asyncio.sleep(0.002)
        ctx.state.readings += 1
        gap = ctx.state.target - ctx.state.temperature
        if abs(gap) < 0.5:
            return End(round(ctx.state.temperature, 1))
        return Heat(min(gap, 2.0)) if gap > 0 else Cool(min(-gap, 2.0))


@dataclass
class Heat(BaseNode[Room, None, float]):
    degrees: float

    async def run(self, ctx: GraphRunContext[Room]) -> ReadTemperature:
        await asyncio.sleep(0.004 * self.degrees)
        ctx.state.temperature += self.degrees * 0.8
        return ReadTemperature()


@dataclass
class Cool(BaseNode[Room, None, float]):
    degrees: float

    async def run(self, ctx: GraphRunContext[Room]) -> ReadTemperature:
        await asyncio.sleep(0.006 * self.degrees)
        ctx.state.temperature -= self.degrees * 0.7
        return ReadTemperature()


thermostat = Graph(nodes=[ReadTemperature, Heat, Cool], name='thermostat', instrumentation=SHOW_STATE)


# --- a node that sometimes fails, and retries ---------------------------------------------------------------


class UpstreamError(Exception):
    """The demo's upstream service failed."""


@dataclass
class FetchState:
    """Seeded randomness and what was fetched."""

    seed: int
    failure_rate: float = 0.5
    max_attempts: int = 3
    rng: random.Random = field(init=False, repr=False)
    body: str | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def __deepcopy__(self, memo: dict[int, Any]) -> FetchState:
        copy = FetchState(self.seed, self.failure_rate, self.max_attempts)
        copy.rng.setstate(self.rng.getstate())
        copy.body = self.body
        return copy


@dataclass
class Fetch(BaseNode[FetchState, None, int]):
    """Call the upstream service; a failure is retried after a backoff, and the run fails after the last attempt."""

    url: str
    attempt: int = 1

    async def run(self, ctx: GraphRunContext[FetchState]) -> Parse | Annotated[Backoff, Edge('retry')]:
        with _tracer.start_as_current_span(f'GET {self.url}') as span:
            span.set_attribute('http.request.method', 'GET')
            span.set_attribute('url.full', self.url)
            await asyncio.sleep(ctx.state.rng.uniform(0.003, 0.02))
            if ctx.state.rng.random() < ctx.state.failure_rate:
                span.set_attribute('http.response.status_code', 503)
                if self.attempt >= ctx.state.max_attempts:
                    raise UpstreamError(f'{self.url} answered 503 {self.attempt} times in a row')
                return Backoff(self.url, self.attempt)
            span.set_attribute('http.response.status_code', 200)
        ctx.state.body = '{"items": [1, 2, 3, 4]}'
        return Parse()


@dataclass
class Backoff(BaseNode[FetchState, None, int]):
    url: str
    attempt: int

    async def run(self, ctx: GraphRunContext[FetchState]) -> Fetch:
        await asyncio.sleep(0.005 * 2**self.attempt)
        return Fetch(self.url, self.attempt + 1)


@dataclass
class Parse(BaseNode[FetchState, None, int]):
    async def run(self, ctx: GraphRunContext[FetchState]) -> End[int]:
        await asyncio.sleep(0.001)
        return End(len((ctx.state.body or '').split(',')))


flaky_fetch = Graph(nodes=[Fetch, Backoff, Parse], name='flaky_fetch', instrumentation=SHOW_STATE)


# --- an agent loop, driven by a scripted model ---------------------------------------------------------------


@dataclass
class ToolCall:
    tool: str
    args: dict[str, str]


@dataclass
class ModelResponse:
    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list[ToolCall])


@dataclass
class ScriptedModel:
    """A stand-in for an LLM: answers with the scripted responses in order, taking `latency` seconds each."""

    responses: list[ModelResponse]
    latency: float = 0.03

    async def request(self, messages: list[str]) -> ModelResponse:
        with _tracer.start_as_current_span('chat scripted-model') as span:
            span.set_attribute('gen_ai.request.model', 'scripted-model')
            span.set_attribute('gen_ai.usage.input_tokens', sum(len(m.split()) for m in messages))
            await asyncio.sleep(self.latency)
            return self.responses[min(len(messages) // 2, len(self.responses) - 1)]


@dataclass
class AgentDeps:
    model: ScriptedModel
    api_token: str = 'demo-token-not-secret'


@dataclass
class AgentState:
    messages: list[str] = field(default_factory=list[str])


def _weather(city: str) -> str:
    return f'{city}: 18°C, light rain'


@dataclass
class UserPromptNode(BaseNode[AgentState, AgentDeps, str]):
    prompt: str

    async def run(self, ctx: GraphRunContext[AgentState, AgentDeps]) -> ModelRequestNode:
        ctx.state.messages.append(f'user: {self.prompt}')
        return ModelRequestNode()


@dataclass
class ModelRequestNode(BaseNode[AgentState, AgentDeps, str]):
    async def run(self, ctx: GraphRunContext[AgentState, AgentDeps]) -> CallToolsNode:
        response = await ctx.deps.model.request(ctx.state.messages)
        return CallToolsNode(response)


@dataclass
class CallToolsNode(BaseNode[AgentState, AgentDeps, str]):
    response: ModelResponse

    async def run(
        self, ctx: GraphRunContext[AgentState, AgentDeps]
    ) -> Annotated[ModelRequestNode, Edge('tool results')] | End[str]:
        if not self.response.tool_calls:
            ctx.state.messages.append(f'assistant: {self.response.text}')
            return End(self.response.text or '')
        for call in self.response.tool_calls:
            with _tracer.start_as_current_span(f'running tool {call.tool}') as span:
                span.set_attribute('gen_ai.tool.name', call.tool)
                await asyncio.sleep(0.008)
                ctx.state.messages.append(f'assistant: call {call.tool}({call.args})')
                ctx.state.messages.append(f'tool: {_weather(call.args["city"])}')
        return ModelRequestNode()


weather_agent = Graph(
    nodes=[UserPromptNode, ModelRequestNode, CallToolsNode], name='weather_agent', instrumentation=SHOW_STATE
)


@dataclass
class Expense:
    """An expense claim waiting for a manager's decision."""

    employee: str
    amount: float
    approved_by: str | None = None
    history: list[str] = field(default_factory=list[str])


@dataclass
class Decision:
    """A manager's answer, handed to the resumed run as its deps."""

    approve: bool
    manager: str


@dataclass
class SubmitExpense(BaseNode[Expense, 'Decision | None', str]):
    async def run(self, ctx: GraphRunContext[Expense, Decision | None]) -> AwaitApproval:
        await asyncio.sleep(0.004)
        ctx.state.history.append(f'submitted {ctx.state.amount:.2f}')
        return AwaitApproval()


@dataclass
class AwaitApproval(BaseNode[Expense, 'Decision | None', str]):
    """Needs a person: the run is left before this node, and resumed with the `Decision` as deps."""

    async def run(self, ctx: GraphRunContext[Expense, Decision | None]) -> PayOut | End[str]:
        await asyncio.sleep(0.002)
        decision = ctx.deps
        if decision is None or not decision.approve:
            ctx.state.history.append('rejected')
            return End(f'{ctx.state.employee}: rejected')
        ctx.state.approved_by = decision.manager
        ctx.state.history.append(f'approved by {decision.manager}')
        return PayOut()


@dataclass
class PayOut(BaseNode[Expense, 'Decision | None', str]):
    async def run(self, ctx: GraphRunContext[Expense, Decision | None]) -> End[str]:
        await asyncio.sleep(0.006)
        ctx.state.history.append('paid')
        return End(f'{ctx.state.employee}: paid {ctx.state.amount:.2f}')


expense_approval = Graph(
    nodes=[SubmitExpense, AwaitApproval, PayOut], name='expense_approval', instrumentation=SHOW_STATE
)
