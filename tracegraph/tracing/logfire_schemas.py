"""The `logfire.json_schema` values of tracegraph's spans: which attributes Logfire should read as JSON.

Logfire shows the attributes a span's schema lists, as they are when the span starts (its console prints then),
so a schema names only what its span holds at that point: a node span's its input; the state is added to it when
the step ends (`state_schema`), and the run span gets `RUN_SCHEMA` when its output is set. Otherwise Logfire
would print `None` for attributes that were set later.
"""

from __future__ import annotations

from typing import Final

__all__ = ('INPUT_SCHEMA', 'RUN_SCHEMA', 'state_schema')

_INPUT: Final = '"tracegraph.node.input":{"type":"object"}'
_STATE: Final = {
    'diff': '"tracegraph.state.diff":{"type":"object"}',
    'full': '"tracegraph.state.before":{},"tracegraph.state.after":{}',
}

INPUT_SCHEMA: Final = '{"type":"object","properties":{' + _INPUT + '}}'
"""A node span's schema from its start (when it records its input)."""
RUN_SCHEMA: Final = '{"type":"object","properties":{"tracegraph.run.output":{}}}'
"""The run span's schema, set with its output."""


def state_schema(include_input: bool, state: str) -> str | None:
    """A node span's schema once its state is recorded (`state` is `'diff'` or `'full'`); None for `'none'`."""
    if state not in _STATE:
        return None
    return '{"type":"object","properties":{' + (_INPUT + ',' if include_input else '') + _STATE[state] + '}}'
