"""A process SIGKILLed while exporting through the spool, then restarted on the same directory: nothing is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from exporters_helpers import OtlpGrpcReceiver, OtlpHttpReceiver, Receiver, Reply, free_port, wait_until

_CHILD = textwrap.dedent(
    """
    import sys, time
    from exporters_helpers import make_spans
    from tracegraph.exporters.settings import resolve_target
    from tracegraph.exporters.spool.exporter import SpoolSpanExporter

    spool_dir, endpoint, protocol, mode, ids_file = sys.argv[1:6]
    target = resolve_target(endpoint=endpoint, protocol=protocol, headers=None, signal='traces')
    spool = SpoolSpanExporter(spool_dir, target=target, initial_backoff=0.02, max_backoff=0.1, request_timeout=5)
    if mode == 'drain':
        ok = spool.force_flush(20_000)
        print('drained' if ok else f'left {spool.pending_spans}', flush=True)
        spool.shutdown()
        sys.exit(0)
    with open(ids_file, 'a') as ids:
        for _ in range(100_000):  # bounded: the parent kills us long before
            batch = make_spans(runs=2, nodes=3)
            spool.export(batch)
            # written only after export() returned: these spans were accepted and must never be lost
            ids.write(''.join(f'{s.context.span_id:016x}\\n' for s in batch))
            ids.flush()
            time.sleep(0.002)
    """
)


def _run_child(tmp_path: Path, receiver: Receiver, protocol: str, mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).parent)}
    args = [str(tmp_path / 'spool'), receiver.endpoint, protocol, mode, str(tmp_path / 'ids.txt')]
    return subprocess.Popen(
        [sys.executable, '-c', _CHILD, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _kill_mid_export_and_restart(tmp_path: Path, receiver: Receiver, protocol: str) -> None:
    ids_file = tmp_path / 'ids.txt'
    # slow answers keep a request in flight and records piling up on disk when the kill comes
    receiver.script(*[Reply(delay=0.2) for _ in range(10_000)])
    child = _run_child(tmp_path, receiver, protocol, 'produce')
    try:
        assert wait_until(lambda: receiver.attempts >= 3 and ids_file.exists() and len(ids_file.read_text()) > 2000)
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=10)
    assert child.returncode == -signal.SIGKILL
    accepted = set(ids_file.read_text().split())
    assert len(accepted) >= 100
    assert not accepted <= receiver.span_ids()  # the kill really left undelivered spans behind

    with receiver.lock:
        receiver.replies.clear()
    restarted = _run_child(tmp_path, receiver, protocol, 'drain')
    out, err = restarted.communicate(timeout=60)
    assert (out.strip(), restarted.returncode) == ('drained', 0), err
    assert accepted <= receiver.span_ids()
    assert list((tmp_path / 'spool').glob('*.seg')) == []


def test_sigkill_mid_export_then_restart_loses_nothing_http(tmp_path: Path) -> None:
    with OtlpHttpReceiver() as receiver:
        _kill_mid_export_and_restart(tmp_path, receiver, 'http/protobuf')


def test_sigkill_mid_export_then_restart_loses_nothing_grpc(tmp_path: Path) -> None:
    with OtlpGrpcReceiver() as receiver:
        _kill_mid_export_and_restart(tmp_path, receiver, 'grpc')


_GRAPH_CHILD = textwrap.dedent(
    """
    import sys, time
    from exporters_helpers import Increment, counter_graph
    from tracegraph.exporters import SpoolOptions, configure

    spool_dir, endpoint = sys.argv[1:3]
    configure(endpoint=endpoint, spool=SpoolOptions(directory=spool_dir), service_name='killed', metrics=False)
    graph = counter_graph()
    ended = 0
    for _ in range(100_000):  # bounded: the parent kills us long before
        graph.run_sync(Increment(0))
        ended += 5  # 4 node spans and the run span, all ended when run_sync returns
        print(ended, time.monotonic(), flush=True)
        time.sleep(0.001)
    """
)


def test_sigkill_loses_at_most_the_spans_of_the_last_200ms(tmp_path: Path) -> None:
    """Graphs run through `configure(spool=SpoolOptions(...))` with the backend down; a SIGKILL at a random moment leaves
    on disk every span that ended more than 200 ms before it."""
    from tracegraph.exporters.spool.segments import SegmentStore

    dead = f'http://127.0.0.1:{free_port()}'
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).parent)}
    env = {k: v for k, v in env.items() if not k.startswith('OTEL_')}
    child = subprocess.Popen(
        [sys.executable, '-c', _GRAPH_CHILD, str(tmp_path / 'spool'), dead],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    progress: list[tuple[int, float]] = []
    try:
        for line in child.stdout:
            ended, at = line.split()
            progress.append((int(ended), float(at)))
            if len(progress) >= 300:
                break
        killed_at = time.monotonic()
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.communicate(timeout=10)
    assert child.returncode == -signal.SIGKILL
    due = max((n for n, at in progress if at <= killed_at - 0.2), default=0)
    assert due >= 400
    store = SegmentStore(tmp_path / 'spool', max_bytes=1 << 30, segment_bytes=1 << 22, fsync=False)
    try:
        assert store.pending_spans >= due, (store.pending_spans, due, progress[-1][0])
    finally:
        store.close()


_WORKER_CHILD = textwrap.dedent(
    """
    import sys, time
    from exporters_helpers import make_spans
    from tracegraph.exporters.settings import resolve_target
    from tracegraph.exporters.spool.exporter import SpoolSpanExporter

    spool_dir, endpoint, ids_file, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    target = resolve_target(endpoint=endpoint, protocol='http/protobuf', headers=None, signal='traces')
    spool = SpoolSpanExporter(spool_dir, target=target, initial_backoff=0.02, max_backoff=0.1, request_timeout=5)
    print(spool.directory, flush=True)
    with open(ids_file, 'a') as ids:
        for _ in range(count):
            batch = make_spans(runs=1, nodes=3)
            spool.export(batch)
            ids.write(''.join(f'{s.context.span_id:016x}\\n' for s in batch))
            ids.flush()
    print('stored', flush=True)
    go = sys.argv[5]
    for _ in range(6000):  # bounded: until the parent says stop (or kills us)
        if __import__('os').path.exists(go):
            break
        time.sleep(0.01)
    spool.shutdown(timeout=0.1)
    """
)


def test_workers_sharing_a_spool_directory_one_killed_nothing_stranded(tmp_path: Path) -> None:
    """Four worker processes share one spool directory while the backend is down; one is SIGKILLed, the others stop. A
    process started later takes over every spool left behind and delivers every span exactly once."""
    dead = f'http://127.0.0.1:{free_port()}'
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).parent)}
    spool_dir = tmp_path / 'spool'
    workers: list[subprocess.Popen[str]] = []
    for i in range(4):
        args = [str(spool_dir), dead, str(tmp_path / f'ids-{i}.txt'), '20', str(tmp_path / 'go')]
        workers.append(
            subprocess.Popen(
                [sys.executable, '-c', _WORKER_CHILD, *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    directories: list[str] = []
    for worker in workers:
        assert worker.stdout is not None
        directories.append(worker.stdout.readline().strip())
        assert worker.stdout.readline().strip() == 'stored'
    assert len(set(directories)) == 4  # each worker its own spool: the shared directory and three worker folders
    workers[1].send_signal(signal.SIGKILL)
    (tmp_path / 'go').touch()  # the others stop normally, their spans left on disk (the backend is down)
    for worker in workers:
        worker.communicate(timeout=30)
    accepted: set[str] = set()
    for i in range(4):
        accepted |= set((tmp_path / f'ids-{i}.txt').read_text().split())
    assert len(accepted) == 4 * 20 * 4

    with OtlpHttpReceiver() as receiver:
        from tracegraph.exporters.settings import resolve_target
        from tracegraph.exporters.spool.exporter import SpoolSpanExporter

        target = resolve_target(endpoint=receiver.endpoint, protocol='http/protobuf', headers=None, signal='traces')
        heir = SpoolSpanExporter(spool_dir, target=target, initial_backoff=0.02, max_backoff=0.1)
        assert heir.force_flush(30_000)
        heir.shutdown()
        received = [s.span_id for s in receiver.spans()]
    assert len(received) == len(set(received)) == len(accepted)
    assert set(received) == accepted
    assert [p for p in spool_dir.iterdir() if p.name.startswith('worker-')] == []
