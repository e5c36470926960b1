"""Agent semantic conventions on request: OpenTelemetry GenAI (v1.41.0 agent spans) and OpenInference, beside
tracegraph's own attributes, from a real SDK pipeline."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from opentelemetry import baggage, context
from tracing_helpers import Pipeline, sdk_attributes

from tracegraph import BaseNode, End, Graph, GraphRunContext, InstrumentationSettings

pytestmark = pytest.mark.anyio


@dataclass
class Plan(BaseNode[None, None, str]):
    question: str

    async def run(self, ctx: GraphRunContext) -> Answer:
        return Answer(f'about {self.question}', api_key='sk-live-123')


@dataclass
class Answer(BaseNode[None, None, str]):
    draft: str
    api_key: str = ''

    async def run(self, ctx: GraphRunContext) -> End[str]:
        if self.draft == 'about nothing':
            raise LookupError('nothing to say')
        return End(self.draft.upper())


def graph(otel: Pipeline, **settings: object) -> Graph[None, None, str]:
    return Graph(nodes=[Plan, Answer], name='helper', instrumentation=otel.settings(**settings))


async def test_gen_ai_agent_attributes_on_the_run_span(otel: Pipeline) -> None:
    token = context.attach(baggage.set_baggage('gen_ai.conversation.id', 'conv-7'))
    try:
        await graph(otel, semconv=('gen_ai',), agent_name='support-agent').run(Plan('tea'))
    finally:
        context.detach(token)
    run = sdk_attributes(otel.span('run graph helper'))
    assert {k: v for k, v in run.items() if k.startswith(('gen_ai.', 'error.'))} == {
        'gen_ai.operation.name': 'invoke_agent',
        'gen_ai.agent.name': 'support-agent',
        'gen_ai.conversation.id': 'conv-7',
    }
    assert run['tracegraph.run.outcome'] == 'completed'  # tracegraph's own attributes stay
    with pytest.raises(LookupError):
        await graph(otel, semconv=('gen_ai',)).run(Plan('nothing'))
    failed = [s for s in otel.spans if s.name == 'run graph helper'][-1]
    assert sdk_attributes(failed)['error.type'] == 'LookupError'
    assert sdk_attributes(failed)['gen_ai.agent.name'] == 'helper'  # the graph's name by default
    assert 'gen_ai.conversation.id' not in sdk_attributes(failed)  # no baggage, no conversation


async def test_openinference_span_kinds_inputs_and_outputs(otel: Pipeline) -> None:
    await graph(otel, semconv=('openinference',)).run(Plan('tea'))
    run = sdk_attributes(otel.span('run graph helper'))
    plan, answer = sdk_attributes(otel.span('run node Plan')), sdk_attributes(otel.span('run node Answer'))
    assert (run['openinference.span.kind'], plan['openinference.span.kind']) == ('AGENT', 'CHAIN')
    assert run['input.value'] == plan['input.value'] == '{"question":"tea"}'
    assert answer['input.value'] == '{"draft":"about tea","api_key":"[Scrubbed]"}'  # scrubbed like the rest
    assert (run['output.value'], run['output.mime_type']) == ('"ABOUT TEA"', 'application/json')
    assert 'gen_ai.operation.name' not in run


async def test_nothing_is_added_by_default_and_bad_values_are_refused(otel: Pipeline) -> None:
    await graph(otel).run(Plan('tea'))
    keys = {k for s in otel.spans for k in sdk_attributes(s)}
    assert not {k for k in keys if k.startswith(('gen_ai.', 'openinference.', 'input.', 'output.'))}
    with pytest.raises(
        ValueError, match=r"^`semconv` must be a sequence of 'gen_ai' and 'openinference', not 'otel'\.$"
    ):
        InstrumentationSettings(semconv=('otel',))  # pyright: ignore[reportArgumentType]  # the misuse under test
    with pytest.raises(ValueError, match=r"not 'gen_ai'\.$"):
        InstrumentationSettings(semconv='gen_ai')  # pyright: ignore[reportArgumentType]  # a str, not a sequence
