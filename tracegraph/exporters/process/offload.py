"""OTLP export from a child process, so encoding batches never holds the graph process's GIL.

In-process, the SDK's batch processor encodes each batch in its worker thread (~30 µs of Python and protobuf per
span); a graph step that wants the GIL meanwhile waits for the interpreter's switch interval, which puts the step
p99 at several milliseconds while p50 stays at ~0.1 ms (`bench/export.py`). `OffloadSpanProcessor` instead turns
each finished span into a `spanrecords` frame where it ends (~5 µs, on the graph's thread, evenly, never a
batch at once), and a writer thread hands the frames to a child process through a pipe, a write that releases the
GIL. The child (`python -m tracegraph.exporters.process.offload`) writes each batch of 512 records (or what 0.5 s
gathered; one batch in flight, one waiting) as an OTLP request with `otlpencode` — the bytes the SDK's encoder would
make, without rebuilding the spans — and sends it with tracegraph's own `senders` (HTTP/protobuf or gRPC). When
both batches are taken the child reads nothing more: a slow backend fills the pipe and then the parent's buffer
(bounded, its drops counted), never a queue that drops silently.

Contract:
- `force_flush()` returns True once the child has sent (or given up sending, see below) every span that ended
  before the call; `shutdown()` flushes, closes the pipe and waits for the child.
- Counted in `dropped`, reason `export_failed`: a batch the backend refuses for good (HTTP 400/413, gRPC
  INVALID_ARGUMENT) or for longer than 10 s of retries, spans it rejects in a partial success, and spans that
  could not be written to a child that died (it is started again at the next write), and spans a child that
  died had been given but had not settled: the child reports each batch it settles (`S <sent>` / `D <lost>`), the
  parent counts the spans it wrote, and when the child's output ends the difference is counted. The one span count
  this can get wrong is a batch the backend took just before the child was killed, ahead of its report: counted
  lost though delivered (never the reverse). Reason `queue_full`: spans ended while more than `max_buffer_bytes`
  wait for the pipe. A `force_flush()` waiting on a child that died returns False.
- When the graph's process is SIGKILLed, the child still exports what it had read (it exports on end of input);
  spans ended less than `schedule_delay` before the kill are still in the parent's buffer and lost, as with the
  SDK's batch processor.
- The OTLP target (headers included) is sent through the pipe, never on the child's command line.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import random
import re
import select
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import asdict
from typing import IO, Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from ..drops import DropCounter
from ..otlp.otlpencode import encode_records
from ..otlp.send_result import Sender
from ..otlp.senders import make_sender
from ..settings import ConfigurationError, OtlpTarget
from .spanrecords import RecordReader, RecordWriter, frame, read_frames

__all__ = ('OffloadSpanProcessor', 'why_no_export_process')

logger = logging.getLogger(__name__)

_FLUSH_AT_BYTES = 256 * 1024


def why_no_export_process() -> str | None:
    """Why this interpreter cannot start `python -m tracegraph.exporters.process.offload` as a child, or None if it can.

    `sys.executable` is not always Python: a frozen app's is the app itself, an embedding server's (uWSGI,
    mod_wsgi) is the server; started with `-m`, either would run a second copy of the host instead of the child.
    """
    if getattr(sys, 'frozen', False):
        return 'this is a frozen application (sys.frozen is set)'
    name = os.path.basename(sys.executable or '')
    if not re.fullmatch(r'(python|pypy)[0-9.]*w?(\.exe)?', name, flags=re.IGNORECASE):
        return f'sys.executable ({sys.executable!r}) is not a Python interpreter'
    return None


class OffloadSpanProcessor(SpanProcessor):
    """Sends finished spans to a child process that exports them over OTLP to `target`."""

    def __init__(
        self,
        target: OtlpTarget,
        *,
        drops: DropCounter | None = None,
        schedule_delay: float = 0.2,
        max_buffer_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._target = target
        self.dropped = drops if drops is not None else DropCounter()
        self._delay = schedule_delay
        self._max_bytes = max_buffer_bytes
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._spans_buffered = 0
        self._writer_state = RecordWriter()
        self._acks: dict[int, tuple[threading.Event, list[bool]]] = {}
        self._flushes = 0
        self._closed = False
        self._child: subprocess.Popen[bytes] | None = None
        self._acks_thread: threading.Thread | None = None
        self._written: dict[int, int] = {}
        """Spans written to each child (by pid) whose output has not ended yet."""
        try:
            self._spawn()
        except OSError as e:
            raise ConfigurationError(
                f'export_process=True could not start `{sys.executable} -m tracegraph.exporters.process.offload`: {e}'
            ) from e
        self._start_writer()
        # A forked process (a pre-forking server's worker) has neither the writer thread nor a pipe of its own.
        os.register_at_fork(after_in_child=functools.partial(_after_fork, weakref.ref(self)))

    def _start_writer(self) -> None:
        self._thread = threading.Thread(target=self._write_loop, name='tracegraph-offload', daemon=True)
        self._thread.start()

    def _forked(self) -> None:
        """In a forked child: fresh locks, no spans of the parent's, an export process and a writer of its own."""
        if self._closed:
            return
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._chunks, self._buffered, self._spans_buffered = [], 0, 0
        self._writer_state = RecordWriter()
        self._acks, self._written = {}, {}
        self._child = None  # the parent's: its pipes stay the parent's to close
        self._spawn()
        self._start_writer()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing: spans are sent when they end."""

    def on_end(self, span: ReadableSpan) -> None:
        """Frame the span (on the calling thread) and queue it for the pipe."""
        context = span.get_span_context()
        if context is None or not context.trace_flags.sampled or self._closed:
            return
        with self._lock:
            if self._buffered > self._max_bytes:
                self.dropped.add('queue_full', 1)
                return
            data = self._writer_state.frames(span)  # under the lock: resource and scope frames go first, once
            self._chunks.append(data)
            self._buffered += len(data)
            self._spans_buffered += 1
            if self._buffered >= _FLUSH_AT_BYTES:
                self._wake.notify()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until the child has exported every span that ended before this call."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._lock:
            if self._closed:
                return False
            self._flushes += 1
            number = self._flushes
            done, ok = self._acks[number] = (threading.Event(), [True])
            self._chunks.append(frame('F', number))
            self._wake.notify()
        answered = done.wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._acks.pop(number, None)
        return answered and ok[0]

    def shutdown(self) -> None:
        """Flush, stop the writer, close the pipe and wait for the child to exit."""
        if self._closed:
            return
        self.force_flush()
        with self._lock:
            self._closed = True
            self._wake.notify()
        self._thread.join(10)
        if self._child is not None:
            self._retire(self._child, self._acks_thread)

    @staticmethod
    def _retire(child: subprocess.Popen[bytes], acks: threading.Thread | None) -> None:
        """Close the child's input (it exports what it read and exits), reap it, and close its pipes."""
        with contextlib.suppress(OSError, ValueError):
            child.stdin.close()  # pyright: ignore[reportOptionalMemberAccess]  # Popen(stdin=PIPE)
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if acks is not None:
            acks.join(5)  # it reads to the end of the child's output, which ended with the child
        if child.stdout is not None:
            child.stdout.close()

    @property
    def child_pid(self) -> int | None:
        """The export process's pid (None between a crash and the next write)."""
        return self._child.pid if self._child is not None else None

    def _spawn(self) -> None:
        child = subprocess.Popen(
            [sys.executable, '-m', 'tracegraph.exporters.process.offload'],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.write(frame('C', asdict(self._target)))
        child.stdin.flush()
        with self._lock:
            self._child = child
            self._written[child.pid] = 0
        self._acks_thread = threading.Thread(target=self._read_acks, args=(child.stdout, child.pid), daemon=True)
        self._acks_thread.start()

    def _read_acks(self, stdout: IO[bytes], pid: int) -> None:
        settled = 0
        for line in stdout:
            parts = line.split()
            if len(parts) == 2 and parts[0] in (b'S', b'D'):
                settled += int(parts[1])
                if parts[0] == b'D':
                    self.dropped.add('export_failed', int(parts[1]))
            elif len(parts) == 2 and parts[0] == b'F':
                with self._lock:
                    found = self._acks.get(int(parts[1]))
                if found is not None:
                    found[0].set()
        # The child's output ended: it exited (having settled everything it was given) or died (not having).
        with self._lock:
            unsettled = self._written.pop(pid, 0) - settled
        if unsettled > 0:
            logger.warning('tracegraph: the export process died with %d spans it had not sent', unsettled)
            self.dropped.add('export_failed', unsettled)

    def _write_loop(self) -> None:
        while True:
            with self._lock:
                if not self._chunks and not self._closed:
                    self._wake.wait(self._delay)
                chunks, self._chunks = self._chunks, []
                spans, self._spans_buffered = self._spans_buffered, 0
                self._buffered = 0
                closed = self._closed
            if chunks:
                self._send(b''.join(chunks), spans)
            if closed and not self._chunks:
                return

    def _send(self, data: bytes, spans: int) -> None:
        child = self._child
        try:
            assert child is not None
            assert child.stdin is not None
            child.stdin.write(data)  # blocks (GIL released) while the child is behind: back-pressure
            child.stdin.flush()
            with self._lock:
                late = child.pid not in self._written  # its output already ended: the pipe took them, nobody reads
                if not late:
                    self._written[child.pid] += spans
            if late:
                self.dropped.add('export_failed', spans)
        except (OSError, ValueError, AssertionError):
            with self._lock:
                # Frames queued meanwhile name resources and scopes the new child never saw: they go too.
                lost = spans + self._spans_buffered
                self._chunks, self._buffered, self._spans_buffered = [], 0, 0
                self._writer_state = RecordWriter()
                for done, ok in self._acks.values():
                    ok[0] = False
                    done.set()
            logger.warning('tracegraph: the export process exited; %d spans lost, starting a new one', lost)
            self.dropped.add('export_failed', lost)
            if child is not None:
                self._retire(child, self._acks_thread)
            self._spawn()


def _after_fork(processor: weakref.ref[OffloadSpanProcessor]) -> None:
    found = processor()  # a weak reference: registering for forks must not keep a processor alive
    if found is not None:
        found._forked()  # pyright: ignore[reportPrivateUsage]  # its own hook, registered by its __init__


# ----------------------------------------------------------------------------------------------- the child


_BATCH = 512
_CHILD_DELAY = 0.5
_SEND_DEADLINE = 10.0
"""Seconds one request may take, retries included (the SDK exporters' default `OTEL_EXPORTER_OTLP_TIMEOUT`)."""


class _Child:
    """The export process: reads frames from standard input, exports their spans in batches, acknowledges flushes.

    A batch is encoded straight from its records (`otlpencode`, the SDK encoder's bytes without rebuilding spans)
    and sent with `senders` in a thread, so reading the next batch overlaps the network wait; at most one more
    batch waits: when both are taken the loop stops reading, the pipe fills and the parent's writer waits, instead
    of a queue here dropping spans. A request the backend refuses is retried with backoff (or after its
    `Retry-After`) for up to `_SEND_DEADLINE` seconds, as the SDK's exporters do; a batch refused for good or for
    too long is reported on standard output as `D <spans>`, and so are spans a backend rejects in a partial success.
    """

    def __init__(self) -> None:
        self._out = sys.stdout.buffer
        self._reader = RecordReader()
        self._senders: list[Sender] = []
        self._batches: queue.Queue[list[tuple[Any, ...]]] = queue.Queue(maxsize=1)
        self._batch: list[tuple[Any, ...]] = []
        self._oldest = 0.0
        threading.Thread(target=self._export_loop, daemon=True).start()

    def run(self) -> None:
        stdin, buffer = sys.stdin.buffer.fileno(), bytearray()
        while True:
            wait = max(0.0, _CHILD_DELAY - (time.monotonic() - self._oldest)) if self._batch else None
            if not select.select([stdin], [], [], wait)[0]:
                self._hand_over()  # the oldest span waited long enough
                continue
            chunk = os.read(stdin, 1 << 20)
            if not chunk:
                break  # the parent shut down or died: export what was read
            buffer += chunk
            for fields in read_frames(buffer):
                self._take(fields)
        self._hand_over()
        self._batches.join()
        for sender in self._senders:
            sender.close()

    def _take(self, fields: tuple[Any, ...]) -> None:
        if fields[0] == 'C':
            self._senders.append(make_sender(OtlpTarget(**fields[1]), timeout=_SEND_DEADLINE))
        elif fields[0] == 'F':
            self._hand_over()
            self._batches.join()
            self._answer(b'F %d\n' % fields[1])
        elif self._reader.keep(fields):
            if not self._batch:
                self._oldest = time.monotonic()
            self._batch.append(fields)
            if len(self._batch) >= _BATCH:
                self._hand_over()

    def _hand_over(self) -> None:
        if self._batch:
            self._batches.put(self._batch)  # waits while the exporter is busy and a batch already waits
            self._batch = []

    def _answer(self, line: bytes) -> None:
        with contextlib.suppress(OSError):  # the parent may be gone: export what was read anyway
            self._out.write(line)
            self._out.flush()

    def _export_loop(self) -> None:
        while True:
            records = self._batches.get()
            if self._senders:
                lost = self._send(encode_records(records, self._reader.resources, self._reader.scopes), len(records))
                self._answer(b'S %d\nD %d\n' % (len(records) - lost, lost) if lost else b'S %d\n' % len(records))
            else:
                self._answer(b'D %d\n' % len(records))
            self._batches.task_done()

    def _send(self, payload: bytes, spans: int) -> int:
        """Send one request until it is accepted, refused for good or out of time; the spans lost."""
        deadline, backoff = time.monotonic() + _SEND_DEADLINE, 0.5
        while True:
            result = self._senders[0].send(payload)
            if result.outcome == 'ok':
                return result.rejected_spans
            delay = result.retry_after if result.retry_after is not None else backoff * (0.5 + random.random())
            if result.outcome == 'drop' or time.monotonic() + delay > deadline:
                logger.warning('tracegraph export process: %d spans not sent (%s)', spans, result.detail)
                return spans
            time.sleep(delay)
            backoff = min(backoff * 2, 8.0)


if __name__ == '__main__':
    _Child().run()
