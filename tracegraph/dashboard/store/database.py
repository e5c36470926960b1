"""The dashboard's DuckDB store: spans and metric points in, runs, timelines and node statistics out.

One `Store` per database file, safe to share between threads: each call works on its own DuckDB cursor,
and writes are serialised so deduplication sees every committed span.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import threading
import time
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb

from ...tracing.clock import datetime_to_ns, ns_to_datetime
from ...tracing.timeline_tables import optional_module
from . import graphstats, runparts
from .columns import METRIC_COLUMNS, SPAN_COLUMNS, MetricBatch, SpanBatch, arrow, arrow_table
from .dedup import RecentKeys, span_key
from .groupcommit import GroupCommitter
from .models import (
    GraphSummary,
    NodeStats,
    RunDetail,
    RunPage,
    RunRef,
    RunSummary,
    SpanDetail,
    SpanInfo,
    SpanRef,
    TimeBucket,
    Transition,
)
from .rundetail import StoredSpan, build_run_detail, span_tree
from .runoutline import LIGHT_COLUMNS, RunOutline, errors_of, read_outline
from .runparts import PartBar, PartPath
from .runquery import RunQuery
from .serving import serving_url

__all__ = ('SPAN_COLUMNS', 'Store', 'StoreError', 'default_db_path')


class StoreError(ValueError):
    """The database file cannot be opened as a store; the message names the file and the reason."""


def _open_error(path: str, exc: Exception) -> StoreError:
    text = str(exc)
    if 'Conflicting lock' in text or 'Could not set lock' in text:
        holder = re.search(r'\(PID (\d+)\)', text)
        who = f'process {holder[1]}' if holder else 'another process'
        url = serving_url(Path(path))
        if url is not None:
            return StoreError(
                f'the store {path} is open in `tracegraph serve` at {url} ({who}): read it through its JSON API '
                '(`tracegraph report` does), stop it, or pass another --db'
            )
        return StoreError(
            f'the store {path} is open in {who} (a running `tracegraph serve`?): stop it or pass another --db'
        )
    if 'not a valid DuckDB database' in text:
        return StoreError(f'{path} is not a DuckDB database: pass another --db (a new file is created)')
    return StoreError(f'cannot open the store {path}: {text.splitlines()[0] if text else type(exc).__name__}')


def default_db_path() -> Path:
    """`$XDG_DATA_HOME/tracegraph/traces.duckdb` (`~/.local/share/...` without it)."""
    base = os.environ.get('XDG_DATA_HOME') or str(Path.home() / '.local' / 'share')
    return Path(base) / 'tracegraph' / 'traces.duckdb'


@dataclass(kw_only=True)
class _Table:
    name: str
    columns: tuple[tuple[str, str], ...]

    def ddl(self) -> str:
        cols = ', '.join(f'"{n}" {t}' for n, t in self.columns)
        return f'CREATE TABLE IF NOT EXISTS {self.name} ({cols})'


_SPANS = _Table(name='spans', columns=SPAN_COLUMNS)
_METRICS = _Table(name='metrics', columns=METRIC_COLUMNS)


_TRACE_HEX = re.compile(r'[0-9a-f]{32}', re.ASCII)

FIRST_WINDOW_NS = 15 * 60 * 10**9
"""The first window of start time a filtered newest-first runs page is looked for in (see `Store.run_page`)."""

CHECKPOINT_THRESHOLD = '256MB'
"""WAL size at which DuckDB folds the log into the database file."""


def _keys(trace_ids: Sequence[str], span_ids: Sequence[str]) -> list[tuple[str, str]]:
    return list(zip(trace_ids, span_ids))


def _merge_span_tables(tables: Sequence[Any]) -> Any:
    """Arrow tables end to end, each (trace_id, span_id) once."""
    if len(tables) == 1:
        return tables[0]
    pa = arrow()
    seen: set[tuple[str, str]] = set()
    kept: list[Any] = []
    for table in tables:
        keys = _keys(table.column('trace_id').to_pylist(), table.column('span_id').to_pylist())
        if not seen.isdisjoint(keys):
            table = table.filter(pa.array([key not in seen for key in keys]))
        seen.update(keys)
        kept.append(table)
    return pa.concat_tables(kept)


class Store:
    """A DuckDB database of spans and metric points.

    Example:
        ```python
        from tracegraph.dashboard.store.database import Store

        with Store(':memory:') as store:
            print(store.runs(limit=5))
            #> []
        ```
    """

    def __init__(self, path: str | Path) -> None:
        """Open (creating when missing) the database at `path` (`:memory:` for a throwaway one).

        Raises:
            StoreError: the file is locked by another process, is not a DuckDB database, or cannot be written.
        """
        self.path = str(path)
        try:
            if self.path != ':memory:':
                Path(self.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                if Path(self.path).is_dir():
                    raise StoreError(f'{self.path} is a directory: pass a file for --db')
            # A bigger WAL between checkpoints: each checkpoint rewrites the table's last, growing row group, so
            # checkpointing every 16 MB (the default) makes steady ingest rewrite the same rows many times.
            self._con = duckdb.connect(self.path, config={'checkpoint_threshold': CHECKPOINT_THRESHOLD})
        except StoreError:
            raise
        except (duckdb.Error, OSError) as exc:
            raise _open_error(self.path, exc) from exc
        self._write_lock = threading.Lock()
        self._pc: Any = importlib.import_module('pyarrow.compute')
        self._span_writer = GroupCommitter[SpanBatch](write=self._write_spans)
        self._metric_writer = GroupCommitter[MetricBatch](write=self._write_metrics)
        with self._cursor() as cur:
            cur.execute(_SPANS.ddl())
            cur.execute(_METRICS.ddl())
            latest = cur.execute('SELECT max(start_ns) FROM spans').fetchone()
        self._recent = RecentKeys(floor_ns=latest[0] if latest and latest[0] is not None else -1)

    def close(self) -> None:
        """Checkpoint and close the database."""
        with self._write_lock:
            self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _cursor(self) -> Generator[duckdb.DuckDBPyConnection]:
        cur = self._con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    # --- writing -------------------------------------------------------------------------------------------------

    @staticmethod
    def _insert(cur: duckdb.DuckDBPyConnection, layout: _Table, rows: Any, select: str = 'SELECT * FROM batch') -> None:
        """INSERT the Arrow table `rows` (scanned by DuckDB without a copy, as relation `batch`) through `select`."""
        cur.register('batch', rows)
        cols = ', '.join(f'"{n}"' for n, _ in layout.columns)
        cur.execute(f'INSERT INTO {layout.name} ({cols}) {select}')

    def insert_spans(self, batch: SpanBatch) -> None:
        """Store a batch, skipping spans already stored; returns once it is committed.

        Batches handed in concurrently (from several threads) are merged into one statement by group commit;
        otherwise each batch is one statement.
        """
        if len(batch):
            self._span_writer.submit(batch)

    def insert_metrics(self, batch: MetricBatch) -> None:
        """Store a batch of metric points; returns once it is committed."""
        if len(batch):
            self._metric_writer.submit(batch)

    def _write_spans(self, batches: Sequence[SpanBatch]) -> None:
        """One INSERT for `batches`, skipping spans already stored (same trace_id and span_id).

        When `RecentKeys` shows the batches cannot repeat a stored span, the INSERT reads the batch alone;
        otherwise it looks the stored spans up, bounded to the batches' start-time range (a span sent again
        carries its start time again), which lets DuckDB skip older row groups by their zone maps.
        """
        rows = _merge_span_tables([b.table for b in batches])
        starts = rows.column('start_ns')
        low, high = int(self._pc.min(starts).as_py()), int(self._pc.max(starts).as_py())
        keys = [span_key(t, s) for t, s in zip(rows.column('trace_id').to_pylist(), rows.column('span_id').to_pylist())]
        with self._write_lock, self._cursor() as cur:
            select = 'SELECT * FROM batch'
            if self._recent.may_repeat(keys, low):
                select = (
                    'SELECT b.* FROM batch AS b WHERE NOT EXISTS ('
                    f'SELECT 1 FROM spans s WHERE s.start_ns BETWEEN {low} AND {high} '
                    'AND s.trace_id = b.trace_id AND s.span_id = b.span_id)'
                )
            self._insert(cur, _SPANS, rows, select)
            self._recent.add(keys, high)

    def _write_metrics(self, batches: Sequence[MetricBatch]) -> None:
        columns = {n: [v for b in batches for v in b.columns[n]] for n, _ in METRIC_COLUMNS}
        with self._write_lock, self._cursor() as cur:
            self._insert(cur, _METRICS, arrow_table(columns, METRIC_COLUMNS))

    def apply_retention(self, days: float, *, now: datetime | None = None) -> int:
        """Delete spans that ended, and metric points taken, more than `days` days ago; returns spans deleted."""
        cutoff = datetime_to_ns((now or datetime.now(timezone.utc)) - timedelta(days=days))
        with self._write_lock, self._cursor() as cur:
            row = cur.execute('DELETE FROM spans WHERE end_ns < ?', [cutoff]).fetchone()
            cur.execute('DELETE FROM metrics WHERE time_ns < ?', [cutoff])
        return int(row[0]) if row else 0

    # --- reading -------------------------------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one SQL statement over the `spans` and `metrics` tables (`?` placeholders take `params`).

        For analysis the pages do not offer; the columns are those of `tracegraph.dashboard.store.columns`.
        """
        with self._cursor() as cur:
            return cur.execute(sql, list(params)).fetchall()

    def query_arrow(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The result of one SQL statement as a `pyarrow.Table` (built by DuckDB, no Python rows in between)."""
        with self._cursor() as cur:
            return cur.sql(sql, params=list(params)).to_arrow_table()

    def query_pandas(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The result of one SQL statement as a pandas `DataFrame`."""
        optional_module('pandas', 'Store')
        return self.query_arrow(sql, params).to_pandas()

    def span_count(self) -> int:
        """How many spans are stored."""
        return int(self.query('SELECT count(*) FROM spans')[0][0])

    def metric_count(self) -> int:
        """How many metric points are stored."""
        return int(self.query('SELECT count(*) FROM metrics')[0][0])

    def runs(self, query: RunQuery | None = None, /, **filters: Any) -> list[RunSummary]:
        """The first page of runs for `query` (or for `RunQuery(**filters)`), newest (or longest) first.

        Example: `store.runs(graph='agent', outcome='failed', min_duration=2.0, since=..., limit=10)`; see
        `RunQuery` for every filter.
        """
        return self.run_page(query or RunQuery(**filters)).runs

    def run_page(self, query: RunQuery) -> RunPage:
        """One page of the runs list and the cursors of the pages before and after it.

        A newest-first page is looked for in growing windows of start time back from the newest span (or the
        page's cursor), so it reads the recent row groups only; each window is 4 times the last, until the page is
        full or the windows reach the oldest span.
        """
        rows = self._page_rows(query)
        page, newer, older = query.cursors(rows)
        runs = [
            RunSummary(
                kind=r[0], trace_id=r[1], run_id=r[2], graph=r[3] or '', service=r[4], name=r[5],
                start=ns_to_datetime(r[6]), duration=max(0, r[7] - r[6]) / 1e9, steps=r[8], outcome=r[9] or 'completed',
            )
            for r in page
        ]  # fmt: skip
        return RunPage(runs=runs, newer=newer.token() if newer else None, older=older.token() if older else None)

    def _page_rows(self, query: RunQuery) -> list[tuple[Any, ...]]:
        def fetch(q: RunQuery) -> list[tuple[Any, ...]]:
            sql, params = q.sql()
            with self._cursor() as cur:
                return cur.execute(sql, params).fetchall()

        if query.sort != 'start' or query.newer is not None:
            return fetch(query)
        low, high = self.query('SELECT min(start_ns), max(start_ns) FROM spans')[0]
        if low is None:
            return []
        floor = max(low, datetime_to_ns(query.since)) if query.since else low
        top = min(high + 1, query.older.value + 1) if query.older else high + 1
        if query.until is not None:
            top = min(top, datetime_to_ns(query.until))
        width = FIRST_WINDOW_NS
        while True:
            start = max(floor, top - width)
            rows = fetch(replace(query, since=ns_to_datetime(start)))
            if len(rows) > query.limit or start <= floor:
                return rows
            width *= 4

    def run(self, trace_id: str, *, run_id: str | None = None) -> RunDetail | None:
        """The run of trace `trace_id` (the outermost one, or `run_id`) with its timeline and nested spans.

        Returns None when the trace holds no such run.
        """
        detail = build_run_detail(self._stored_spans(trace_id.lower()), run_id=run_id)
        if detail is not None:
            start_ns = datetime_to_ns(detail.timeline.start)
            detail.resumed_from, detail.resumed_by = self.resumed_parts(
                trace_id, detail.timeline.run_id, start_ns, graph=detail.timeline.graph or None
            )
        return detail

    def _stored_spans(
        self, trace_id: str, where: str = '', params: Sequence[Any] = (), *, limit: int | None = None
    ) -> list[StoredSpan]:
        rows = self.query(
            'SELECT span_id, parent_span_id, name, start_ns, end_ns, status_code, status_message, attributes, events, '
            f'run_id, node_id, is_run FROM spans WHERE trace_id = ? {where} ORDER BY start_ns, span_id'
            + ('' if limit is None else f' LIMIT {int(limit)}'),
            [trace_id, *params],
        )
        return [
            StoredSpan(
                trace_hex=trace_id, span_hex=r[0], parent_hex=r[1], name=r[2], start_ns=r[3], end_ns=r[4],
                status_name=r[5], status_message=r[6], attrs=json.loads(r[7]) if r[7] else {},
                event_list=json.loads(r[8]) if r[8] else [], run_id=r[9], node_id=r[10], is_run=r[11],
            )
            for r in rows
        ]  # fmt: skip

    def run_outline(
        self, trace_id: str, *, run_id: str | None = None, steps: str | None = None, stale_after: float = 600.0
    ) -> RunOutline | None:
        """What a run page draws: the run's totals, overview and per-node summary, one window of steps (`steps`,
        e.g. `201-400`) with the spans nested under them, and its exceptions (see `runoutline`).

        None when trace `trace_id` holds no such run.

        Raises:
            ValueError: `steps` is not a range of step numbers.
        """
        trace_id = trace_id.lower()
        stale_ns = time.time_ns() - int(stale_after * 1e9)
        with self._cursor() as cur:
            # the trace's spans once, as Arrow (no Python objects), for the outline's queries to read
            own = cur.sql(
                f"SELECT trace_id, {LIGHT_COLUMNS}, CASE WHEN events LIKE '%exception%' THEN events END AS events "
                'FROM spans WHERE trace_id = ?',
                params=[trace_id],
            ).to_arrow_table()
            cur.register('trace_spans', own)

            def query(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
                return cur.execute(sql, list(params)).fetchall()

            outline = read_outline(query, trace_id, run_id=run_id, window=steps, stale_ns=stale_ns)
            if outline is not None:
                outline.errors = errors_of(query, outline)
            cur.unregister('trace_spans')
        return outline

    def find_run(self, text: str) -> tuple[str, str | None] | None:
        """The (trace id, run id) `text` names: a stored trace (its graph run, run id None if it holds none) or a
        run id; None when it names neither."""
        lowered = text.lower()
        if _TRACE_HEX.fullmatch(lowered):
            rows = self.query(
                'SELECT run_id, bool_or(is_run) FROM spans WHERE trace_id = ? GROUP BY run_id ORDER BY 2 DESC LIMIT 1',
                [lowered],
            )
            if rows:
                return lowered, rows[0][0]
        rows = self.query('SELECT trace_id FROM spans WHERE run_id = ? LIMIT 1', [text])
        return (rows[0][0], text) if rows else None

    def span_texts(self, trace_id: str, span_ids: Sequence[str], key: str) -> dict[str, str | None]:
        """Attribute `key` (e.g. `tracegraph.node.input`) of each of the spans `span_ids` of trace `trace_id`, as
        text."""
        rows = self.query(
            'SELECT span_id, json_extract_string(attributes, ?) FROM spans '
            'WHERE trace_id = ? AND list_contains(?, span_id)',
            [f'$."{key}"', trace_id.lower(), list(span_ids)],
        )
        return {r[0]: r[1] for r in rows}

    def previous_run(self, graph: str, start_ns: int) -> RunRef | None:
        """The run of `graph` that started last before `start_ns`, if any."""
        rows = self.query(
            'SELECT trace_id, run_id, graph, start_ns, outcome FROM spans WHERE is_run AND graph = ? AND start_ns < ? '
            'ORDER BY start_ns DESC LIMIT 1',
            [graph, start_ns],
        )
        if not rows:
            return None
        r = rows[0]
        return RunRef(trace_id=r[0], run_id=r[1], graph=r[2], start=ns_to_datetime(r[3]), outcome=r[4])

    def span_detail(self, trace_id: str, span_id: str) -> SpanDetail | None:
        """One span of trace `trace_id` with all its attributes and events, its parent and its children."""
        trace_id, span_id = trace_id.lower(), span_id.lower()
        found = self._stored_spans(trace_id, 'AND span_id = ?', [span_id])
        if not found:
            return None
        span = found[0]
        around = self.query(
            'SELECT span_id, name, span_id = ? FROM spans WHERE trace_id = ? AND (span_id = ? OR parent_span_id = ?) '
            'ORDER BY start_ns, span_id',
            [span.parent_hex or '', trace_id, span.parent_hex or '', span_id],
        )
        parent = next((SpanRef(span_id=r[0], name=r[1]) for r in around if r[2]), None)
        children = [SpanRef(span_id=r[0], name=r[1]) for r in around if not r[2]]
        return SpanDetail(trace_id=trace_id, span=span.info(0), parent=parent, children=children)

    def trace_spans(self, trace_id: str, *, limit: int = 10_000) -> list[SpanInfo]:
        """The spans of trace `trace_id` as a tree, depth first in start order (at most `limit`); [] when unknown."""
        spans = self._stored_spans(trace_id.lower(), limit=limit)
        return span_tree(spans)

    def resumed_parts(
        self, trace_id: str, run_id: str, start_ns: int, *, graph: str | None = None
    ) -> tuple[list[RunRef], list[RunRef]]:
        """The other parts of a run that was interrupted and resumed (of `graph`: any graph when None): those
        before it and those after it, found through its whole chain of traces (see `runparts`)."""
        return runparts.run_parts(self.query, trace_id, run_id, start_ns, graph)

    def part_path(self, trace_id: str, run_id: str) -> PartPath:
        """One part of a resumed run's transitions and where its last step led (see `runparts.part_path`)."""
        return runparts.part_path(self.query, trace_id, run_id)

    def part_bars(self, trace_id: str, run_id: str, start_ns: int, end_ns: int, bins: int) -> list[PartBar]:
        """The node steps of one part of a resumed run as bars, one per node and per bin of its time (see
        `runparts.part_bars`)."""
        return runparts.part_bars(self.query, trace_id, run_id, start_ns, end_ns, bins)

    def graphs(self) -> list[GraphSummary]:
        """Every graph with a run or a node step stored: its name, how many runs ended, and when it last started a
        run or step, newest first. A graph is listed from its first node span, while its first run still runs."""
        rows = self.query(
            'SELECT graph, count(*) FILTER (WHERE is_run), max(start_ns) FROM spans '
            'WHERE graph IS NOT NULL AND (is_run OR node_id IS NOT NULL) GROUP BY graph ORDER BY 3 DESC'
        )
        return [GraphSummary(name=r[0], runs=r[1], last_seen=ns_to_datetime(r[2])) for r in rows]

    def run_totals(self, graph: str, *, since: datetime | None = None) -> tuple[int, int, float]:
        """Of the runs of `graph` started since `since`: how many, how many failed, and their summed seconds."""
        return graphstats.run_totals(self.query, graph, since=since)

    def node_stats(self, graph: str, *, since: datetime | None = None) -> list[NodeStats]:
        """Per node of `graph`: step count, error rate and duration percentiles (seconds), by average step."""
        return graphstats.node_stats(self.query, graph, since=since)

    def edges(self, graph: str, *, since: datetime | None = None) -> list[Transition]:
        """Transitions seen in `graph` (node -> the node it returned, `End` included), most frequent first."""
        return graphstats.edges(self.query, graph, since=since)

    def timeseries(
        self, graph: str, *, node: str | None = None, since: datetime | None = None, until: datetime | None = None
    ) -> list[TimeBucket]:
        """Runs of `graph` (or steps of `node`) per time bucket: counts by outcome, p50/p95/p99 seconds."""
        return graphstats.timeseries(self.query, graph, node=node, since=since, until=until)
