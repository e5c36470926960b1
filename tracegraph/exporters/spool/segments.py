"""The spool's on-disk store: append-only segment files of length-prefixed, checksummed records.

Layout of a spool directory:

- `0000000000000001.seg`, `0000000000000002.seg`, …: segments, oldest first. A record is a 16-byte header
  (magic `TGS1`, payload length, CRC-32 of the payload, number of spans; big-endian) and its payload, one
  OTLP `ExportTraceServiceRequest`. Each record is written with a single `write()` on a file opened for
  appending, so a crash can at worst leave one torn record at the very end, which reading detects.
- `lock`: held with `flock` by the one process using the directory.
- `cursor`: `<segment> <offset>` of the first record not yet acknowledged (two fixed-width numbers), overwritten
  in place after every acknowledgement, so a restart resends at most the one record that was in flight.

Faults, and what they cost:

- A write that fails part-way (disk full, a short write) is cut back to the record's start (`ftruncate` needs no
  space) and reported as `SpoolWriteError`: a record is stored whole or not at all. A missing directory is made
  again before the next write.
- Acknowledging never needs free space: a finished segment is deleted before the cursor moves, and the cursor is
  rewritten in place without growing; when even that fails, the cursor stays right in memory and is written later.
- A record whose checksum fails is skipped, and reading goes on at the next intact record (the record's length
  when its header is whole, else the next header whose checksum holds); the spans lost are counted from the
  headers. Files and folders that are not segments are skipped with a warning.

- A segment given up while the sender has one of its records out (the directory removed from outside, or the
  oldest segment dropped to bound disk use) is counted lost without that record, which stays pending: delivered
  and acknowledged, it is not lost; asked for the next record instead (its send failed), or closed, the store
  counts it then. So no span is both delivered and counted lost.

A segment is deleted once every record in it was acknowledged. A new process never appends to an old
segment: it starts a new one, so old segments are immutable.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..local.diskio import write_whole

__all__ = ('SegmentStore', 'Record', 'Dropped', 'SpoolLockedError', 'SpoolWriteError')

_HEADER = struct.Struct('>4sIII')
_MAGIC = b'TGS1'
_SUFFIX = '.seg'
_CURSOR = 'cursor'
_LOCK = 'lock'

logger = logging.getLogger('tracegraph.exporters.spool.exporter')


class SpoolLockedError(RuntimeError):
    """Another live process holds the spool directory."""


class SpoolWriteError(OSError):
    """A record could not be stored whole (disk full, a short write, the directory gone or read-only)."""


@dataclass(frozen=True, kw_only=True)
class Record:
    """One stored batch, read back for sending."""

    segment: int
    offset: int
    end: int
    spans: int
    payload: bytes


@dataclass(frozen=True, kw_only=True)
class Dropped:
    """Spans given up by the store (to bound disk use, or because a segment was corrupt)."""

    spans: int
    bytes: int
    reason: str


@dataclass(kw_only=True)
class _Segment:
    size: int
    spans: int
    """Spans in records not yet acknowledged."""


class SegmentStore:
    """Thread-safe append-only segment files with an acknowledgement cursor and a bound on their total size."""

    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int, fsync: bool) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._lock = threading.Lock()
        self._segments: dict[int, _Segment] = {}
        self._active: int | None = None
        self._cursor = (0, 0)
        self._cursor_dirty = False
        self._out: Record | None = None
        """The record `next_record` handed out and not yet acknowledged: the sender may be delivering it."""
        self._orphan: Dropped | None = None
        """`_out`'s spans when its segment was given up while it was out: lost only if it is not acknowledged."""
        self._lock_fd = self._lock_directory()
        self._recover()

    def _lock_directory(self) -> int | None:
        """Hold an exclusive lock on the directory: two live processes sending one spool would send it twice."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return None
        fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            raise SpoolLockedError(
                f'spool directory {str(self.directory)!r} is in use by another live process: {e}'
            ) from e
        return fd

    def close(self) -> Dropped | None:
        """Delete the active segment when all of it was acknowledged, and release the directory lock (the kernel
        also releases it when the process dies); returns the spans of a record out when its segment was given up,
        never delivered."""
        with self._lock:
            orphan, self._orphan = self._orphan, None
            active = self._active
            if active is not None and self._cursor == (active, self._segments[active].size):
                self._active = None
                self._finish_segment(active)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        return orphan

    # --- startup -------------------------------------------------------------------------------------------

    def _path(self, seq: int) -> Path:
        return self.directory / f'{seq:016d}{_SUFFIX}'

    def _segment_files(self) -> list[int]:
        seqs: list[int] = []
        for path in self.directory.glob(f'*{_SUFFIX}'):
            if not path.stem.isdigit() or not path.is_file():
                logger.warning('tracegraph spool: skipping %s, which is not a segment file', path)
                continue
            seqs.append(int(path.stem))
        return sorted(seqs)

    def _recover(self) -> None:
        seqs = self._segment_files()
        cursor_seq, cursor_off = self._read_cursor()
        for seq in seqs:
            if seq < cursor_seq:  # acknowledged, but the process died before deleting it
                self._path(seq).unlink(missing_ok=True)
                continue
            start = cursor_off if seq == cursor_seq else 0
            size = self._path(seq).stat().st_size
            self._segments[seq] = _Segment(size=size, spans=self._count_spans(seq, start, size))
        first = min(self._segments, default=0)
        self._cursor = (cursor_seq, cursor_off) if cursor_seq == first else (first, 0)

    def _read_cursor(self) -> tuple[int, int]:
        try:
            seq, off = (self.directory / _CURSOR).read_text().split()
            return int(seq), int(off)
        except (OSError, ValueError):
            return 0, 0

    def _count_spans(self, seq: int, start: int, size: int) -> int:
        """Spans in the records from `start` on, by their headers (a bad header is skipped to the next magic)."""
        spans, offset = 0, start
        try:
            data = self._path(seq).read_bytes()[:size]
        except OSError:
            return 0
        while offset + _HEADER.size <= len(data):
            magic, length, _crc, n = _HEADER.unpack_from(data, offset)
            if magic != _MAGIC:
                found = data.find(_MAGIC, offset + 1)
                if found < 0:
                    break
                offset = found
                continue
            spans += n
            offset += _HEADER.size + length
        return spans

    # --- writing -------------------------------------------------------------------------------------------

    def append(self, payload: bytes, spans: int) -> list[Dropped]:
        """Store one batch durably; returns what had to be dropped to stay within `max_bytes`.

        Raises:
            SpoolWriteError: the record could not be stored whole; nothing of it is left on disk.
        """
        record = _HEADER.pack(_MAGIC, len(payload), zlib.crc32(payload), spans) + payload
        dropped: list[Dropped] = []
        with self._lock:
            if len(record) > self.max_bytes:
                return [Dropped(spans=spans, bytes=len(record), reason='batch_too_large')]
            if not self.directory.is_dir():
                dropped.extend(self._recreate_directory())
            while self._segments and self._total() + len(record) > self.max_bytes:
                dropped.append(self._drop_oldest())
            if self._active is None:
                self._active = max(self._segments, default=self._cursor[0]) + 1
                self._segments[self._active] = _Segment(size=0, spans=0)
                if len(self._segments) == 1:
                    self._cursor = (self._active, 0)
            seg = self._segments[self._active]
            self._write_record(self._path(self._active), seg.size, record)
            seg.size += len(record)
            seg.spans += spans
            if seg.size >= self.segment_bytes:
                self._active = None
        return dropped

    def _write_record(self, path: Path, size: int, record: bytes) -> None:
        """Append `record` at `size` whole, or leave the file as it was and raise `SpoolWriteError`."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError as e:
            raise SpoolWriteError(e.errno, f'cannot open {path}: {e.strerror}') from e
        try:
            write_whole(fd, record, size, fsync=self.fsync)
        except OSError as e:
            raise SpoolWriteError(e.errno, f'cannot write {path}: {e.strerror or e}') from e
        finally:
            os.close(fd)

    def _recreate_directory(self) -> list[Dropped]:
        """The directory was removed from outside, with its segments: make it again and count what they held."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        lost = sum(self._given_up(seq, seg, 'directory_removed') for seq, seg in self._segments.items())
        logger.error('tracegraph spool: %s was removed with %d unsent spans; made it again', self.directory, lost)
        self._segments.clear()
        self._active = None
        self._cursor = (self._cursor[0] + 1, 0)
        if self._lock_fd is not None:  # the old lock file went with the directory
            os.close(self._lock_fd)
            self._lock_fd = None
            self._lock_fd = self._lock_directory()
        self._write_cursor()
        return [Dropped(spans=lost, bytes=0, reason='directory_removed')] if lost else []

    def _total(self) -> int:
        return sum(s.size for s in self._segments.values())

    def _drop_oldest(self) -> Dropped:
        seq = min(self._segments)
        seg = self._segments.pop(seq)
        if seq == self._active:
            self._active = None
        self._path(seq).unlink(missing_ok=True)
        size = seg.size - (self._cursor[1] if self._cursor[0] == seq else 0)
        self._cursor = (min(self._segments, default=seq + 1), 0)
        self._write_cursor()
        return Dropped(spans=self._given_up(seq, seg, 'spool_full'), bytes=size, reason='spool_full')

    def _given_up(self, seq: int, seg: _Segment, reason: str) -> int:
        """The spans of segment `seq`, given up for `reason`, to count lost now: all it holds unacknowledged but the
        record out with the sender, which may still arrive (it counts when it comes back unacknowledged)."""
        out = self._out
        if out is None or out.segment != seq:
            return seg.spans
        self._orphan = Dropped(spans=out.spans, bytes=len(out.payload), reason=reason)
        return seg.spans - out.spans

    def _write_cursor(self) -> None:
        """Overwrite the cursor file in place (fixed width: it never grows, so a full disk cannot stop it).

        On failure the cursor stays right in memory and is written with the next acknowledgement or `flush_cursor`.
        """
        text = f'{self._cursor[0]:020d} {self._cursor[1]:020d}\n'.encode()
        try:
            fd = os.open(self.directory / _CURSOR, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.pwrite(fd, text, 0)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            if not self._cursor_dirty:
                logger.warning(
                    'tracegraph spool: cannot write the cursor in %s (%s); kept in memory', self.directory, e
                )
            self._cursor_dirty = True
            return
        self._cursor_dirty = False

    def flush_cursor(self) -> None:
        """Write the cursor if an earlier write of it failed."""
        with self._lock:
            if self._cursor_dirty:
                self._write_cursor()

    # --- reading and acknowledging -------------------------------------------------------------------------

    def next_record(self) -> tuple[Record | None, Dropped | None]:
        """The oldest record not yet acknowledged, or None when everything was; plus what was found lost (corrupt,
        or the record handed out last time, not delivered, whose segment was given up meanwhile)."""
        with self._lock:
            orphan, self._orphan, self._out = self._orphan, None, None
        if orphan is not None:
            return None, orphan
        while True:
            with self._lock:
                seq, offset = self._cursor
                seg = self._segments.get(seq)
                if seg is None:
                    return None, None
                if offset >= seg.size:
                    if seq == self._active:
                        return None, None  # the writer may still append here
                    self._finish_segment(seq)
                    continue
                size = seg.size
            try:
                record = self._read(seq, offset, size)
            except FileNotFoundError:
                with self._lock:
                    seg = self._segments.get(seq)
                    if self._cursor[0] != seq or seg is None:
                        continue  # dropped meanwhile to bound disk use
                    # Deleted from outside (the directory removed): what it held is lost, and counted.
                    self._segments.pop(seq)
                    if seq == self._active:
                        self._active = None
                    self._cursor = (min(self._segments, default=seq + 1), 0)
                    self._write_cursor()
                    logger.error('tracegraph spool: segment %s vanished with %d unsent spans', seq, seg.spans)
                    return None, Dropped(spans=seg.spans, bytes=size - offset, reason='directory_removed')
            with self._lock:
                if record is not None:
                    if self._cursor != (seq, offset) or seq not in self._segments:
                        continue  # given up (and counted) while it was read: not handed out
                    self._out = record
                    return record, None
                seg = self._segments.get(seq)
                if self._cursor != (seq, offset) or seg is None:
                    continue
                next_offset, lost = self._resync(seq, offset, size, seg.spans)
                logger.error(
                    'tracegraph spool: a record in segment %s at byte %d is damaged; %d spans lost, reading on at %d',
                    seq,
                    offset,
                    lost,
                    next_offset,
                )
                seg.spans -= lost
                if next_offset >= seg.size and seq != self._active:
                    self._finish_segment(seq)
                else:
                    self._cursor = (seq, next_offset)
                    self._write_cursor()
                return None, Dropped(spans=lost, bytes=next_offset - offset, reason='corrupt')

    def _resync(self, seq: int, offset: int, size: int, pending: int) -> tuple[int, int]:
        """Where the next intact record after the damaged one at `offset` starts, and how many spans are lost.

        A whole header gives the damaged record's length and span count. Otherwise the next header whose record
        checks out is searched for, and the lost spans are those pending less those still readable after it.
        """
        try:
            data = self._path(seq).read_bytes()[:size]
        except OSError:
            return size, pending
        if offset + _HEADER.size <= len(data):
            magic, length, _crc, spans = _HEADER.unpack_from(data, offset)
            end = offset + _HEADER.size + length
            if magic == _MAGIC and end <= len(data) and (end == len(data) or data.startswith(_MAGIC, end)):
                return end, spans
        position = offset + 1
        while (position := data.find(_MAGIC, position)) >= 0:
            if self._intact(data, position):
                return position, max(0, pending - self._count_spans(seq, position, size))
            position += 1
        return len(data), pending

    @staticmethod
    def _intact(data: bytes, offset: int) -> bool:
        if offset + _HEADER.size > len(data):
            return False
        magic, length, crc, _spans = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        return magic == _MAGIC and start + length <= len(data) and zlib.crc32(data[start : start + length]) == crc

    def _read(self, seq: int, offset: int, size: int) -> Record | None:
        with self._path(seq).open('rb') as f:
            f.seek(offset)
            header = f.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return None
            magic, length, crc, spans = _HEADER.unpack(header)
            if magic != _MAGIC or offset + _HEADER.size + length > size:
                return None
            payload = f.read(length)
        if len(payload) != length or zlib.crc32(payload) != crc:
            return None
        return Record(segment=seq, offset=offset, end=offset + _HEADER.size + length, spans=spans, payload=payload)

    def ack(self, record: Record) -> None:
        """Mark `record` as delivered (or given up): move the cursor past it, deleting a finished segment."""
        with self._lock:
            if record is self._out:
                self._out = self._orphan = None  # delivered, or counted by the sender (refused for good)
            if self._cursor != (record.segment, record.offset):
                return  # its segment was dropped while it was in flight
            seg = self._segments[record.segment]
            seg.spans -= record.spans
            self._cursor = (record.segment, record.end)
            if record.end >= seg.size and record.segment != self._active:
                self._finish_segment(record.segment)
            else:
                self._write_cursor()

    def _finish_segment(self, seq: int) -> None:
        self._segments.pop(seq, None)
        # Deleted first: it needs no space, and a restart skips a missing segment (the cursor then points past it).
        try:
            self._path(seq).unlink(missing_ok=True)
        except OSError as e:
            logger.warning('tracegraph spool: cannot delete acknowledged segment %s: %s', seq, e)
        self._cursor = (min(self._segments, default=seq + 1), 0)
        self._write_cursor()

    # --- state ---------------------------------------------------------------------------------------------

    @property
    def pending_spans(self) -> int:
        """Spans stored and not yet acknowledged (a record out with the sender when its segment was given up
        included, until it is delivered or counted lost)."""
        with self._lock:
            out = self._orphan.spans if self._orphan is not None else 0
            return sum(s.spans for s in self._segments.values()) + out

    @property
    def disk_bytes(self) -> int:
        """Bytes of segment files on disk."""
        with self._lock:
            return self._total()
