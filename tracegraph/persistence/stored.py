"""Reading stored snapshots back, for the durable persistences (file, SQLite, PostgreSQL): every problem is an error
that names where the snapshots are stored and which field is wrong.

pydantic ignores a stored field that the state or node type no longer has, so a renamed or removed field would be
read as its default and, once written again, lost for good. `decode_snapshots` therefore compares what it read with
what the types make of it: a stored value the types would drop is an error (nothing is written back), while a field
added to a type since (with a default) is read as its default, which loses nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic

from .. import exceptions

__all__ = ('decode_snapshots', 'validation_problems', 'dropped_fields')


def validation_problems(error: pydantic.ValidationError, *, limit: int = 5) -> str:
    """The first `limit` problems of `error`, each as `where: what` (`where` a path into the stored snapshots)."""
    return '; '.join(
        f'{".".join(str(p) for p in e["loc"]) or "(the whole document)"}: {e["msg"]}' for e in error.errors()[:limit]
    )


def dropped_fields(stored: Any, typed: Any, path: str = '') -> list[str]:
    """The paths (`a.b.0.c`) of the values in `stored` (parsed JSON) that have no place in `typed` (the JSON the types
    make of it): what re-validating `stored` loses."""
    if isinstance(stored, dict) and isinstance(typed, dict):
        found: list[str] = []
        for key, value in stored.items():  # pyright: ignore[reportUnknownVariableType]
            where = f'{path}.{key}' if path else str(key)  # pyright: ignore[reportUnknownArgumentType]
            if key not in typed:
                found.append(where)
            else:
                found.extend(dropped_fields(value, typed[key], where))
        return found
    if isinstance(stored, list) and isinstance(typed, list):
        items: list[tuple[Any, Any]] = list(zip(stored, typed))  # pyright: ignore[reportUnknownArgumentType]
        return [p for i, (s, t) in enumerate(items) for p in dropped_fields(s, t, f'{path}.{i}' if path else str(i))]
    return []


def decode_snapshots(
    adapter: pydantic.TypeAdapter[list[Any]], raw: str | bytes, where: str, *, check_fields: bool = True
) -> list[Any]:
    """The snapshots in `raw` (a JSON list of them), read with `adapter`; `where` names the store in errors.

    `check_fields=False` skips the search for dropped fields, for snapshots read (and checked) before.

    Raises:
        GraphRuntimeError: `raw` is not JSON, does not validate, or holds a field the graph's types do not have.
    """
    try:
        snapshots = adapter.validate_json(raw)
    except pydantic.ValidationError as error:
        raise exceptions.GraphRuntimeError(
            f'{where} does not hold snapshots of this graph ({error.error_count()} problem(s)): '
            f'{validation_problems(error)}'
        ) from error
    if not check_fields:
        return snapshots
    typed = adapter.dump_python(snapshots, mode='json')
    dropped = [
        f'`{path}` of snapshot {snapshot.id!r}'
        for snapshot, stored, made in zip(snapshots, json.loads(raw), typed)
        for path in dropped_fields(stored, made)
    ]
    if dropped:
        listed = ', '.join(dropped[:5]) + (f' and {len(dropped) - 5} more' if len(dropped) > 5 else '')
        raise exceptions.GraphRuntimeError(
            f"{where} holds stored fields that the graph's state and node types do not have: {listed}. Reading them "
            'would lose their values, so nothing was read or changed: restore the field (or its old name), or '
            'migrate the stored snapshots.'
        )
    return snapshots
