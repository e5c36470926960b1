"""A process SIGKILLed while exporting through the spool, then restarted on the same directory: nothing is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from exporters_helpers import OtlpGrpcReceiver, OtlpHttpReceiver, Receiver, Reply, wait_until

_CHILD = textwrap.dedent(
    """
    import sys, time
    from exporters_helpers import make_spans
    from tracegraph.exporters.settings import resolve_target
    from tracegraph.exporters.spool import SpoolSpanExporter

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
