"""The store's write path: group commit, repeat detection across restarts, decoding in worker processes."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from google.rpc.status_pb2 import Status
from serve_helpers import emit_run, exporting_provider, protobuf_body, running_server

from tracegraph.dashboard.ingest.otlp import parse_traces
from tracegraph.dashboard.store.database import Store
from tracegraph.dashboard.store.dedup import RecentKeys, span_key
from tracegraph.dashboard.store.groupcommit import GroupCommitter

PROTO = 'application/x-protobuf'


class BlockingWriter:
    """Records each write; the first one waits until released, so others queue up behind it."""

    def __init__(self) -> None:
        self.writes: list[list[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: Sequence[str]) -> None:
        if not self.writes:
            self.writes.append(list(items))
            self.started.set()
            assert self.release.wait(10)
        else:
            self.writes.append(list(items))
        if 'bad' in items:
            raise ValueError(f'cannot write {list(items)}')


def submit_all(committer: GroupCommitter[str], writer: BlockingWriter, items: list[str]) -> dict[str, str]:
    """Submit 'first' (which blocks the writer), then `items` from threads; returns each item's result."""
    results: dict[str, str] = {}

    def submit(item: str) -> None:
        try:
            committer.submit(item)
            results[item] = 'ok'
        except ValueError as exc:
            results[item] = str(exc)

    first = threading.Thread(target=submit, args=('first',))
    first.start()
    assert writer.started.wait(10)
    threads = [threading.Thread(target=submit, args=(item,)) for item in items]
    for t in threads:
        t.start()
    # every item is queued behind the blocked write before it is released
    for _ in range(1000):
        if committer.queued == len(items):
            break
        threading.Event().wait(0.005)
    assert committer.queued == len(items)
    writer.release.set()
    for t in [first, *threads]:
        t.join(10)
    return results


def test_group_commit_merges_queued_items() -> None:
    writer = BlockingWriter()
    committer = GroupCommitter[str](write=writer)
    results = submit_all(committer, writer, ['a', 'b', 'c'])
    assert results == {'first': 'ok', 'a': 'ok', 'b': 'ok', 'c': 'ok'}
    assert writer.writes[0] == ['first']
    assert sorted(writer.writes[1]) == ['a', 'b', 'c']
    assert len(writer.writes) == 2


def test_group_commit_isolates_a_failing_item() -> None:
    writer = BlockingWriter()
    committer = GroupCommitter[str](write=writer)
    results = submit_all(committer, writer, ['a', 'bad', 'c'])
    assert results == {'first': 'ok', 'a': 'ok', 'c': 'ok', 'bad': "cannot write ['bad']"}
    # the merged write failed, then each item was written on its own
    assert sorted(map(tuple, writer.writes[2:])) == [('a',), ('bad',), ('c',)]


def test_group_commit_respects_max_items() -> None:
    writer = BlockingWriter()
    committer = GroupCommitter[str](write=writer, max_items=2)
    results = submit_all(committer, writer, ['a', 'b', 'c', 'd', 'e'])
    assert set(results.values()) == {'ok'}
    assert [len(w) for w in writer.writes] == [1, 2, 2, 1]


def test_recent_keys() -> None:
    recent = RecentKeys(floor_ns=100, capacity=4)
    a, b, c = [span_key('t', 'a'), span_key('t', 'b')], [span_key('t', 'c'), span_key('t', 'd')], [span_key('t', 'e')]
    assert recent.may_repeat(a, 100)  # may have been stored before this process started
    assert not recent.may_repeat(a, 101)
    recent.add(a, 200)
    recent.add(b, 300)
    assert recent.may_repeat(a, 150)
    assert not recent.may_repeat(c, 150)
    recent.add(c, 400)  # over capacity: the oldest batch is forgotten and the floor rises to its latest start
    assert recent.floor_ns == 200
    assert recent.may_repeat([span_key('t', 'x')], 150)
    assert not recent.may_repeat(a, 250)
    assert recent.may_repeat(b, 250)


def sample_batch(runs: int = 1) -> bytes:
    with exporting_provider() as (provider, memory):
        for _ in range(runs):
            emit_run(provider)
    return protobuf_body(memory.get_finished_spans())


def test_repeats_are_found_after_a_restart(tmp_path: Path) -> None:
    body = sample_batch()
    db = tmp_path / 'traces.duckdb'
    with Store(db) as store:
        store.insert_spans(parse_traces(body, PROTO))
    with Store(db) as store:
        store.insert_spans(parse_traces(body, PROTO))
        assert store.span_count() == 6


def test_concurrent_copies_are_stored_once() -> None:
    body = sample_batch(runs=3)
    with Store(':memory:') as store:
        threads = [threading.Thread(target=store.insert_spans, args=(parse_traces(body, PROTO),)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert store.span_count() == 18


def test_decode_workers() -> None:
    body = sample_batch(runs=40)
    assert len(body) > 32 * 1024  # large enough to be decoded in the worker process
    with running_server(decode_workers=1) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.post('/v1/traces', content=body, headers={'Content-Type': PROTO}).status_code == 200
        assert len(c.get('/api/runs', params={'limit': 100}).json()) == 40
        bad = c.post('/v1/traces', content=b'\xff' * 40_000, headers={'Content-Type': PROTO})
        status = Status.FromString(bad.content)
        assert (bad.status_code, status.message) == (
            400,
            'Malformed protobuf body: it is not a valid ExportTraceServiceRequest.',
        )
        assert server.store is not None
        assert server.store.span_count() == 240


def _spawned_children() -> list[int]:
    pids: list[int] = []
    for task in Path(f'/proc/{os.getpid()}/task').iterdir():
        for pid in (task / 'children').read_text().split():
            cmdline = Path(f'/proc/{pid}/cmdline').read_bytes()
            if b'spawn_main' in cmdline:
                pids.append(int(pid))
    return pids


@pytest.mark.skipif(not Path('/proc/self/task').exists(), reason='needs Linux /proc to find the worker process')
def test_a_killed_decode_worker_loses_nothing(caplog: pytest.LogCaptureFixture) -> None:
    first, second = sample_batch(runs=30), sample_batch(runs=30)
    with running_server(decode_workers=1) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.post('/v1/traces', content=first, headers={'Content-Type': PROTO}).status_code == 200
        workers = _spawned_children()
        assert len(workers) == 1
        os.kill(workers[0], signal.SIGKILL)
        reply = c.post('/v1/traces', content=second, headers={'Content-Type': PROTO})
        assert reply.status_code == 200
        assert [r.getMessage() for r in caplog.records] == ['a decode worker died; restarting the pool']
        assert server.store is not None
        assert server.store.span_count() == 360
        # the pool was replaced: large bodies go to a worker process again
        assert c.post('/v1/traces', content=sample_batch(runs=30), headers={'Content-Type': PROTO}).status_code == 200
        assert server.store.span_count() == 540
