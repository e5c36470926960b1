"""Agent semantic conventions a run can also speak, so GenAI-aware backends render graph runs as agents.

Opt-in with `InstrumentationSettings(semconv=('gen_ai', 'openinference'))`; tracegraph's own attributes are always
written, these are added beside them.

- `gen_ai`: OpenTelemetry's GenAI agent spans (semantic conventions v1.41.0, "Invoke agent internal span"): the
  run span gets `gen_ai.operation.name` = `invoke_agent`, `gen_ai.agent.name` (the graph's name, or
  `agent_name`), `gen_ai.conversation.id` when the caller's context carries it as baggage (the key is the same
  name), and `error.type` (the exception's type) when the run failed.
- `openinference`: Arize's OpenInference conventions (semantic conventions 0.1): `openinference.span.kind` is
  `AGENT` on the run span and `CHAIN` on node spans; `input.value` is the node's input (the run span: its start
  node's), `output.value` the run's output, both the scrubbed JSON tracegraph writes in its own attributes, with
  `input.mime_type` / `output.mime_type` `application/json`.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from opentelemetry import baggage
from opentelemetry.context import Context

__all__ = (
    'GEN_AI_AGENT_NAME',
    'GEN_AI_CONVERSATION_ID',
    'GEN_AI_OPERATION_NAME',
    'OPENINFERENCE_SPAN_KIND',
    'SEMCONVS',
    'Semconv',
    'node_attributes',
    'run_end_attributes',
    'run_start_attributes',
)

Semconv = Literal['gen_ai', 'openinference']
SEMCONVS: Final = ('gen_ai', 'openinference')

GEN_AI_OPERATION_NAME: Final = 'gen_ai.operation.name'
GEN_AI_AGENT_NAME: Final = 'gen_ai.agent.name'
GEN_AI_CONVERSATION_ID: Final = 'gen_ai.conversation.id'
ERROR_TYPE: Final = 'error.type'
OPENINFERENCE_SPAN_KIND: Final = 'openinference.span.kind'
INPUT_VALUE: Final = 'input.value'
INPUT_MIME_TYPE: Final = 'input.mime_type'
OUTPUT_VALUE: Final = 'output.value'
OUTPUT_MIME_TYPE: Final = 'output.mime_type'
_JSON: Final = 'application/json'


def run_start_attributes(semconv: frozenset[str], agent_name: str, context: Context | None = None) -> dict[str, Any]:
    """What the run span carries from its start."""
    out: dict[str, Any] = {}
    if 'gen_ai' in semconv:
        out[GEN_AI_OPERATION_NAME] = 'invoke_agent'
        out[GEN_AI_AGENT_NAME] = agent_name
        conversation = baggage.get_baggage(GEN_AI_CONVERSATION_ID, context)
        if conversation is not None:
            out[GEN_AI_CONVERSATION_ID] = str(conversation)
    if 'openinference' in semconv:
        out[OPENINFERENCE_SPAN_KIND] = 'AGENT'
    return out


def node_attributes(semconv: frozenset[str]) -> dict[str, Any]:
    """What every node span of the run carries."""
    return {OPENINFERENCE_SPAN_KIND: 'CHAIN'} if 'openinference' in semconv else {}


def input_attributes(semconv: frozenset[str], input_json: str | None) -> dict[str, Any]:
    """The input a node span (and, for the first step, the run span) carries, from tracegraph's node input."""
    if 'openinference' not in semconv or input_json is None:
        return {}
    return {INPUT_VALUE: input_json, INPUT_MIME_TYPE: _JSON}


def run_end_attributes(semconv: frozenset[str], output_json: str | None, error_type: str | None) -> dict[str, Any]:
    """What the run span gets when it ends: its output, or the type of the error that failed it."""
    out: dict[str, Any] = {}
    if 'gen_ai' in semconv and error_type is not None:
        out[ERROR_TYPE] = error_type
    if 'openinference' in semconv and output_json is not None:
        out[OUTPUT_VALUE] = output_json
        out[OUTPUT_MIME_TYPE] = _JSON
    return out
