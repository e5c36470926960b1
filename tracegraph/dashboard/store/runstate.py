"""A run's state after step N, rebuilt from what its node spans recorded (`InstrumentationSettings.state`).

With `state='full'` a node span holds the whole state before and after it (`tracegraph.state.before/after`): the
state after step N is step N's own, exactly. With `state='diff'` each holds only the fields it changed, with their
old and new values (`tracegraph.state.diff`): a field's value after step N is its new value at the last step up to
N that changed it, or, when it first changes later, its old value there; a field no step changed is unknown (and
not listed), so the answer is partial. With `state='none'` nothing is known.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ...tracing.attributes import STATE_AFTER, STATE_BEFORE, STATE_DIFF

__all__ = ('FieldAtStep', 'StateAtStep', 'state_at')

Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


@dataclass(kw_only=True)
class FieldAtStep:
    """One field of the state after a step."""

    value: Any
    changed_at: int | None
    """The last step up to this one that changed the field; None when none did (it held this value from the start)."""


@dataclass(kw_only=True)
class StateAtStep:
    """The run's state after `step`: every field known, and whether that is all of it."""

    step: int
    recorded: Literal['full', 'diff', 'none']
    """What the run's node spans recorded of the state."""
    fields: dict[str, FieldAtStep] = field(default_factory=dict[str, FieldAtStep])
    complete: bool = False
    """True when `fields` is the whole state (recorded `full`); with `diff`, fields no step changed are missing."""


def _loaded(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text  # cut at the attribute length limit: shown as the text it is


def state_at(query: Query, trace_id: str, run_id: str, step: int) -> StateAtStep | None:
    """The state of run `run_id` of trace `trace_id` after its step `step`; None when the run has no such step.

    Args:
        query: runs one SQL statement with `?` parameters against the store's `spans` table.
        trace_id: the trace, lower-case hex.
        run_id: the run.
        step: 1-based step number of the run.
    """
    rows = query(
        'SELECT step, '
        f'json_extract_string(attributes, \'$."{STATE_DIFF}"\'), '
        f'json_extract_string(attributes, \'$."{STATE_BEFORE}"\'), '
        f'json_extract_string(attributes, \'$."{STATE_AFTER}"\') '
        'FROM spans WHERE trace_id = ? AND run_id = ? AND node_id IS NOT NULL AND NOT is_run ORDER BY step',
        [trace_id, run_id],
    )
    if not any(r[0] == step for r in rows):
        return None
    own = next(r for r in rows if r[0] == step)
    if own[3] is not None:
        return _from_full(rows, step)
    diffs = [(r[0], _loaded(r[1])) for r in rows if r[1] is not None]
    if not diffs:
        return StateAtStep(step=step, recorded='none')
    result = StateAtStep(step=step, recorded='diff')
    for number, diff in diffs:
        if not isinstance(diff, dict):
            continue
        changes: dict[str, Any] = diff  # pyright: ignore[reportUnknownVariableType]
        for name, change in changes.items():
            change_map: dict[str, Any] = change if isinstance(change, dict) else {}  # pyright: ignore[reportUnknownVariableType]
            if number <= step:
                result.fields[name] = FieldAtStep(value=change_map.get('new'), changed_at=number)
            elif name not in result.fields:
                result.fields[name] = FieldAtStep(value=change_map.get('old'), changed_at=None)
    result.fields = dict(sorted(result.fields.items()))
    return result


def _from_full(rows: Sequence[tuple[Any, ...]], step: int) -> StateAtStep:
    """The state after `step` as its node span recorded it, each field with the last step up to it that changed it."""
    after = _loaded(next(r[3] for r in rows if r[0] == step))
    if not isinstance(after, dict):
        return StateAtStep(step=step, recorded='full', fields={'state': FieldAtStep(value=after, changed_at=None)})
    state: dict[str, Any] = after  # pyright: ignore[reportUnknownVariableType]
    changed: dict[str, int] = {}
    for number, _, before_text, after_text in rows:
        if number > step:
            break
        before, now = _loaded(before_text), _loaded(after_text)
        if isinstance(before, dict) and isinstance(now, dict):
            old_fields: dict[str, Any] = before  # pyright: ignore[reportUnknownVariableType]
            new_fields: dict[str, Any] = now  # pyright: ignore[reportUnknownVariableType]
            for name in new_fields:
                if old_fields.get(name) != new_fields[name]:
                    changed[name] = number
    fields = {name: FieldAtStep(value=value, changed_at=changed.get(name)) for name, value in sorted(state.items())}
    return StateAtStep(step=step, recorded='full', fields=fields, complete=True)
