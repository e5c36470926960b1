"""Which spans this process stored recently, so most batches skip the repeat check against the whole table.

Looking stored spans up costs more than inserting them. A batch can only repeat a span stored earlier with
the same ids and the same start time (an exporter sending it again), so the store keeps hashes of the keys it
wrote lately: a batch none of whose keys is among them, and which starts after every span not tracked
(stored before this process opened the file, or forgotten since), cannot hold a repeat and is inserted
directly. Any other batch, including a hash collision, takes the exact SQL check.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ('RecentKeys', 'span_key')


def span_key(trace_id: str, span_id: str) -> int:
    """The hash a span is remembered by."""
    return hash((trace_id, span_id))


@dataclass(kw_only=True)
class RecentKeys:
    """Hashes of the keys of the spans written last, up to `capacity` of them."""

    floor_ns: int
    """Spans that start at or before this may be stored without being tracked here."""
    capacity: int = 1_000_000
    _keys: set[int] = field(default_factory=set[int], init=False)
    _batches: deque[tuple[list[int], int]] = field(default_factory=deque[tuple[list[int], int]], init=False)
    _size: int = field(default=0, init=False)

    def may_repeat(self, keys: Iterable[int], min_start_ns: int) -> bool:
        """False only when no span of the batch can already be stored."""
        return min_start_ns <= self.floor_ns or not self._keys.isdisjoint(keys)

    def add(self, keys: list[int], max_start_ns: int) -> None:
        """Track the keys of a committed batch, forgetting the oldest batches beyond `capacity`."""
        self._keys.update(keys)
        self._batches.append((keys, max_start_ns))
        self._size += len(keys)
        while self._size > self.capacity and len(self._batches) > 1:
            old, old_max = self._batches.popleft()
            self._keys.difference_update(old)
            self._size -= len(old)
            self.floor_ns = max(self.floor_ns, old_max)
