"""Group commit: batches that arrive while a write is in progress are written together by the next one.

A DuckDB statement has a fixed cost (planning, the WAL fsync at commit) that dominates a 512-span insert.
When requests arrive concurrently, the first caller becomes the writer; callers that arrive meanwhile queue
their batch and wait, and the next writer inserts every queued batch in one statement. Each caller returns
only once its own batch is committed (or raises what failed it), so a 200 still means "stored".
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ('GroupCommitter',)

T = TypeVar('T')


@dataclass(kw_only=True)
class _Pending(Generic[T]):
    item: T
    done: bool = False
    written: bool = False
    error: BaseException | None = None


@dataclass(kw_only=True)
class GroupCommitter(Generic[T]):
    """Serialises writes of `T`, merging the items queued during a write into the next one.

    `write(items)` must write all of `items` atomically (one transaction) or raise. When a merged write fails,
    each of its items is written again on its own, so one bad item fails only its caller.
    """

    write: Callable[[Sequence[T]], None]
    max_items: int = 64
    """At most this many items per write."""
    _cv: threading.Condition = field(default_factory=threading.Condition, init=False)
    _queue: list[_Pending[T]] = field(default_factory=list[_Pending[T]], init=False)
    _busy: bool = field(default=False, init=False)

    @property
    def queued(self) -> int:
        """Items waiting for a write (not counting the one in progress)."""
        with self._cv:
            return len(self._queue)

    def submit(self, item: T) -> None:
        """Write `item` (possibly together with others); returns once it is committed.

        Raises:
            Exception: whatever `write` raised for this item.
        """
        mine = _Pending(item=item)
        with self._cv:
            self._queue.append(mine)
        while True:
            with self._cv:
                while self._busy and not mine.done:
                    self._cv.wait()
                if mine.done:
                    break
                self._busy = True
                group, self._queue = self._queue[: self.max_items], self._queue[self.max_items :]
            try:
                self._write_group(group)
            finally:
                with self._cv:
                    for pending in group:
                        if not pending.written and pending.error is None:  # the write itself was interrupted
                            pending.error = RuntimeError('The write was interrupted.')
                        pending.done = True
                    self._busy = False
                    self._cv.notify_all()
        if mine.error is not None:
            raise mine.error

    def _write_group(self, group: list[_Pending[T]]) -> None:
        try:
            self.write([p.item for p in group])
        except Exception as exc:
            if len(group) == 1:
                group[0].error = exc
                return
        else:
            for pending in group:
                pending.written = True
            return
        for pending in group:  # the merged write failed: find out whose item it was
            try:
                self.write([pending.item])
                pending.written = True
            except Exception as exc:
                pending.error = exc
