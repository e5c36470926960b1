"""Which runs to list: the filters, order and page of the runs list, and the SQL that answers them.

The list holds three kinds of rows, from the `spans` table alone:

- finished runs: a run span (its outcome is the run's);
- runs in progress: node spans of a run whose run span has not arrived (the run span ends last), shown as
  `running`, or `stale` once their last node span ended `stale_after` seconds ago (within `OPEN_RUN_HORIZON`);
- plain traces: the root span of a trace no tracegraph span belongs to (other instrumentation), outcome
  `failed` when the root span's status is ERROR and `completed` otherwise.

Pages are keyset pages: each row has the key (sort value, trace id, run id) — the sort value is the start or the
duration in nanoseconds — and a page asks for the rows after (older, or slower) or before (newer) a key, so
paging never repeats or skips a row while new runs arrive.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ...tracing.clock import datetime_to_ns

__all__ = ('Cursor', 'RunQuery', 'RUN_KINDS', 'RUN_OUTCOMES', 'SORTS', 'ATTR_KEY')

SORTS = ('start', 'duration')
RUN_KINDS = ('run', 'trace')
RUN_OUTCOMES = ('completed', 'failed', 'interrupted', 'running', 'stale')
ATTR_KEY = re.compile(r'[A-Za-z0-9_.:/@-]{1,200}', re.ASCII)
"""The attribute keys `attr=` matches (the characters OpenTelemetry attribute names use)."""

OPEN_RUN_HORIZON = 86_400.0
"""Seconds back (or ten times `stale_after`, if longer) in which node spans are looked at for runs in progress:
a run left unfinished before that drops off the list (its page, and `q=` with its run id, still find it)."""

_CURSOR = re.compile(r'(-?[0-9]{1,20})\.([0-9a-f]{32})\.(.{1,1000})', re.ASCII | re.DOTALL)


@dataclass(frozen=True, kw_only=True)
class Cursor:
    """A row's place in the list: its sort value (start or duration, ns), trace id and run id."""

    value: int
    trace_id: str
    run_id: str

    def token(self) -> str:
        """The text form used in URLs (`older=` / `newer=`)."""
        return f'{self.value}.{self.trace_id}.{self.run_id}'

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """The cursor of `token()`'s text.

        Raises:
            ValueError: the text is not a cursor.
        """
        match = _CURSOR.fullmatch(text)
        if match is None:
            raise ValueError(f'{text[:80]!r} is not a page cursor (use the older/newer links of a page).')
        return cls(value=int(match[1]), trace_id=match[2], run_id=match[3])


_ROWS = """
WITH finished AS (
    SELECT 'run' AS kind, trace_id, run_id, graph, service_name, NULL AS name, start_ns, end_ns, steps, outcome
    FROM spans WHERE is_run AND run_id IS NOT NULL AND start_ns >= $since_ns
), finished_keys AS (
    -- a run span ends after its node spans and after the root span of its trace started: those that end since
    -- the page's start bound are all the anti joins below need
    SELECT trace_id, run_id FROM spans WHERE is_run AND run_id IS NOT NULL AND end_ns >= $since_ns
), open_nodes AS (
    -- node spans of runs whose run span has not arrived: the anti join first, so only they are grouped
    SELECT n.trace_id, n.run_id, n.graph, n.service_name, n.start_ns, n.end_ns FROM (
        SELECT trace_id, run_id, graph, service_name, start_ns, end_ns FROM spans
        WHERE node_id IS NOT NULL AND run_id IS NOT NULL AND NOT is_run AND start_ns >= $open_since
    ) n ANTI JOIN finished_keys f ON f.run_id = n.run_id
), open_runs AS (
    SELECT 'run' AS kind, trace_id, run_id, any_value(graph) AS graph, any_value(service_name) AS service_name,
           NULL AS name, min(start_ns) AS start_ns, max(end_ns) AS end_ns, count(*) AS steps,
           CASE WHEN max(end_ns) < $stale_ns THEN 'stale' ELSE 'running' END AS outcome
    FROM open_nodes GROUP BY trace_id, run_id
), plain_traces AS (
    SELECT 'trace' AS kind, s.trace_id, s.span_id AS run_id, NULL AS graph, s.service_name, s.name, s.start_ns,
           s.end_ns, NULL AS steps, CASE WHEN s.status_code = 'ERROR' THEN 'failed' ELSE 'completed' END AS outcome
    FROM spans s ANTI JOIN (SELECT trace_id FROM finished_keys UNION ALL SELECT trace_id FROM open_nodes) g
    ON g.trace_id = s.trace_id
    WHERE s.parent_span_id IS NULL AND s.run_id IS NULL AND s.start_ns >= $since_ns
), listed AS (
    SELECT * FROM finished UNION ALL SELECT * FROM open_runs UNION ALL SELECT * FROM plain_traces
)
SELECT kind, trace_id, run_id, graph, service_name, name, start_ns, end_ns, steps, outcome, {sort} AS sort_ns
FROM listed r
"""

COLUMNS = ('kind', 'trace_id', 'run_id', 'graph', 'service_name', 'name', 'start_ns', 'end_ns', 'steps', 'outcome')
"""The columns of each row `RunQuery.sql` selects, before the sort value."""


@dataclass(frozen=True, kw_only=True)
class RunQuery:
    """Filters, order and page of a runs list; every filter is optional and they combine with AND."""

    graph: str | None = None
    service: str | None = None
    """`service.name` of the resource that sent the run."""
    outcome: str | None = None
    """One of `RUN_OUTCOMES`."""
    kind: Literal['run', 'trace'] | None = None
    """Graph runs only, or plain traces only; both by default."""
    since: datetime | None = None
    """Started at or after."""
    until: datetime | None = None
    """Started before."""
    min_duration: float | None = None
    """Seconds, at least."""
    max_duration: float | None = None
    """Seconds, at most."""
    node: str | None = None
    """Runs that ran this node."""
    edge: tuple[str, str] | None = None
    """Runs that took this transition: a step of the first node returned the second (`End` when it ended the run)."""
    attrs: tuple[tuple[str, str], ...] = ()
    """(key, value) pairs; each must match an attribute of the run's span or one of its node spans, as text."""
    search: str | None = None
    """A trace id or run id (whole, or its first six characters or more), or part of a graph or root-span name, or
    of any span's name, status message, events (exception type and message) or attributes, in any case."""
    sort: Literal['start', 'duration'] = 'start'
    """Newest first, or longest first."""
    limit: int = 50
    older: Cursor | None = None
    """Rows after this one in the order (older, or shorter)."""
    newer: Cursor | None = None
    """Rows before this one in the order (newer, or longer)."""
    stale_after: float = 600.0
    """Seconds after its last node span ended at which a run without its run span is shown as stale."""
    now: datetime | None = field(default=None, compare=False)

    def sql(self) -> tuple[str, dict[str, Any]]:
        """The statement and its named parameters: `limit + 1` rows of the page, in the page's order."""
        now_ns = datetime_to_ns(self.now) if self.now else _now_ns()
        since_ns = datetime_to_ns(self.since) if self.since is not None else 0
        horizon = now_ns - int(max(OPEN_RUN_HORIZON, 10 * self.stale_after) * 1e9)
        params: dict[str, Any] = {
            'stale_ns': now_ns - int(self.stale_after * 1e9),
            'since_ns': since_ns,
            'open_since': max(since_ns, horizon),
        }
        where: list[str] = []

        def add(clause: str, **values: Any) -> None:
            where.append(clause)
            params.update(values)

        self._row_filters(add)
        self._span_filters(add)
        self._search_filter(add)
        sort = 'r.start_ns' if self.sort == 'start' else 'r.end_ns - r.start_ns'
        descending = self.newer is None
        cursor = self.older or self.newer
        if cursor is not None:
            op = '<' if descending else '>'
            add(
                f'({sort} {op} $c_value OR ({sort} = $c_value AND (r.trace_id {op} $c_trace '
                f'OR (r.trace_id = $c_trace AND r.run_id {op} $c_run))))',
                c_value=cursor.value,
                c_trace=cursor.trace_id,
                c_run=cursor.run_id,
            )
        direction = 'DESC' if descending else 'ASC'
        text = _ROWS.format(sort=sort)
        if where:
            text += 'WHERE ' + ' AND '.join(where) + '\n'
        text += f'ORDER BY sort_ns {direction}, r.trace_id {direction}, r.run_id {direction} LIMIT $limit'
        params['limit'] = self.limit + 1
        return text, params

    def _row_filters(self, add: Callable[..., None]) -> None:
        """The filters on a listed row's own columns."""
        for clause, name, value in (
            ('r.graph = $graph', 'graph', self.graph),
            ('r.service_name = $service', 'service', self.service),
            ('r.outcome = $outcome', 'outcome', self.outcome),
            ('r.kind = $kind', 'kind', self.kind),
            ('r.start_ns >= $since', 'since', datetime_to_ns(self.since) if self.since else None),
            ('r.start_ns < $until', 'until', datetime_to_ns(self.until) if self.until else None),
            ('r.end_ns - r.start_ns >= $min_ns', 'min_ns', _ns(self.min_duration)),
            ('r.end_ns - r.start_ns <= $max_ns', 'max_ns', _ns(self.max_duration)),
        ):
            if value is not None:
                add(clause, **{name: value})

    def _span_filters(self, add: Callable[..., None]) -> None:
        """The filters on the spans of a listed run (or trace): node, edge and attributes."""
        # the spans of a run start after its run span (and a trace's after its root): a start bound on them lets
        # DuckDB skip the older row groups
        later = ' AND {t}.start_ns >= $since' if self.since is not None else ''
        if self.node is not None:
            add(
                'EXISTS (SELECT 1 FROM spans n WHERE n.trace_id = r.trace_id AND n.run_id = r.run_id '
                f'AND n.node_id = $node{later.format(t="n")})',
                node=self.node,
            )
        if self.edge is not None:
            add(
                'EXISTS (SELECT 1 FROM spans e WHERE e.trace_id = r.trace_id AND e.run_id = r.run_id '
                f'AND e.node_id = $edge_from AND e.next_node = $edge_to{later.format(t="e")})',
                edge_from=self.edge[0],
                edge_to=self.edge[1],
            )
        owner = "(r.kind = 'trace' OR (a.run_id = r.run_id AND (a.is_run OR a.node_id IS NOT NULL)))"
        for i, (key, value) in enumerate(self.attrs):
            # The stored JSON is compact, so a match holds `"key":"value"` (a string) or `"key":value` (a number or
            # a literal) as it is: a substring test finds the candidates fast, and only they have their JSON parsed.
            quoted_key = '"' + json.dumps(key, ensure_ascii=False)[1:-1] + '":'
            add(
                f'EXISTS (SELECT 1 FROM spans a WHERE a.trace_id = r.trace_id AND {owner}{later.format(t="a")} '
                f'AND (contains(a.attributes, $attr_s{i}) OR contains(a.attributes, $attr_l{i})) '
                f'AND json_extract_string(a.attributes, $attr_path{i}) = $attr_value{i})',
                **{
                    f'attr_path{i}': f'$."{key}"',
                    f'attr_value{i}': value,
                    f'attr_s{i}': quoted_key + json.dumps(value, ensure_ascii=False),
                    f'attr_l{i}': quoted_key + value,
                },
            )

    def _search_filter(self, add: Callable[..., None]) -> None:
        """`search`: a run's or trace's ids (whole, or their first six characters or more), its graph or root span
        name, or any span of it: a nested span's name, an exception's type or message, an attribute's text."""
        if self.search is None:
            return
        later = ' AND s.start_ns >= $since' if self.since is not None else ''
        add(
            '(r.trace_id = lower($search) OR r.run_id = $search '
            'OR (length($search) >= 6 AND (starts_with(r.trace_id, lower($search)) OR starts_with(r.run_id, $search))) '
            "OR r.graph ILIKE $search_like ESCAPE '\\' OR r.name ILIKE $search_like ESCAPE '\\' "
            'OR EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = r.trace_id '
            f"AND (r.kind = 'trace' OR s.run_id IS NULL OR s.run_id = r.run_id){later} "
            "AND (s.name ILIKE $search_like ESCAPE '\\' OR s.status_message ILIKE $search_like ESCAPE '\\' "
            "OR s.events ILIKE $search_like ESCAPE '\\' OR s.attributes ILIKE $search_like ESCAPE '\\')))",
            search=self.search,
            search_like='%' + _like_escaped(self.search) + '%',
        )

    def cursors(self, rows: Sequence[Sequence[Any]]) -> tuple[list[Sequence[Any]], Cursor | None, Cursor | None]:
        """The page's rows in list order, and the cursors of the newer and older pages (None at either end).

        `rows` are what `sql()` selected: `COLUMNS` then the sort value, `limit + 1` at most.
        """
        more = len(rows) > self.limit
        page = list(rows[: self.limit])
        if self.newer is not None:
            page.reverse()
        if not page:
            return page, None, None

        def key(row: Sequence[Any]) -> Cursor:
            return Cursor(value=int(row[len(COLUMNS)]), trace_id=row[1], run_id=row[2])

        has_newer = more if self.newer is not None else self.older is not None
        has_older = more if self.newer is None else True
        return page, key(page[0]) if has_newer else None, key(page[-1]) if has_older else None


def _ns(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1e9)


def _like_escaped(text: str) -> str:
    return text.replace('\\', '\\\\').replace('%', '\\%').replace('_', '\\_')


def _now_ns() -> int:
    return time.time_ns()
