"""Decoding OTLP span requests in worker processes, so ingest uses more than the one core the GIL allows.

Decoding protobuf into columns is pure Python work; DuckDB's insert is not (it releases the GIL). With a
worker process decoding and building the Arrow table, the server's own process is left with HTTP and the
insert, and the two run on different cores. Small bodies are decoded in a thread: shipping them costs more.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import anyio.to_thread

from ..store.columns import SpanBatch
from .otlp import parse_traces, read_or_400

__all__ = ('DecodePool', 'decode_traces')

logger = logging.getLogger('tracegraph.dashboard')


def decode_traces(body: bytes, media: str) -> SpanBatch:
    """`parse_traces`, with any failure reported as a 400 `OtlpError` (the body is at fault, never the store)."""
    return read_or_400(parse_traces, body, media)


def _warm_up() -> None:
    importlib.import_module('tracegraph.dashboard.ingest.otlp')


def _worker_init(parent: int) -> None:
    # Ctrl-C reaches the whole process group: the server shuts the pool down, workers must not die first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), name='tracegraph-parent-watch', daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """End this worker once the server that started it is gone (a SIGKILL or OOM kill leaves no time to stop it):
    a worker is re-parented when its parent dies, so its parent pid changes."""
    while os.getppid() == parent:
        time.sleep(_PARENT_CHECK)
    os._exit(0)


_PARENT_CHECK = 0.5
"""Seconds between a worker's looks at whether the server is still there."""


@dataclass(kw_only=True)
class DecodePool:
    """`workers` processes decoding span requests of at least `min_bytes`; 0 workers decodes in threads."""

    workers: int
    min_bytes: int = 32 * 1024
    _executor: ProcessPoolExecutor | None = field(default=None, init=False)

    def start(self) -> None:
        """Start the worker processes (spawned: forking a threaded server is unsafe)."""
        if self.workers > 0 and self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context('spawn'),
                initializer=_worker_init,
                initargs=(os.getpid(),),
            )
            # workers start on demand: start them now rather than in the first large request
            for _ in range(self.workers):
                self._executor.submit(_warm_up)

    def close(self) -> None:
        """Stop the workers once the requests they hold are decoded."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def traces(self, body: bytes, media: str) -> SpanBatch:
        """Decode a trace request body.

        Raises:
            OtlpError: the body is not a valid request.
        """
        executor = self._executor
        if executor is None or len(body) < self.min_bytes:
            return await anyio.to_thread.run_sync(decode_traces, body, media)
        try:
            return await asyncio.wrap_future(executor.submit(decode_traces, body, media))
        except BrokenProcessPool:
            # a worker died (killed from outside): serve this request in a thread and replace the pool
            logger.warning('a decode worker died; restarting the pool')
            if self._executor is executor:
                self._executor = None
                executor.shutdown(wait=False)
                self.start()
            return await anyio.to_thread.run_sync(decode_traces, body, media)
