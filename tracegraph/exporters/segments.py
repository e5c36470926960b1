"""The spool's on-disk store: append-only segment files of length-prefixed, checksummed records.

Layout of a spool directory:

- `0000000000000001.seg`, `0000000000000002.seg`, …: segments, oldest first. A record is a 16-byte header
  (magic `TGS1`, payload length, CRC-32 of the payload, number of spans; big-endian) and its payload, one
  OTLP `ExportTraceServiceRequest`. Each record is written with a single `write()` on a file opened for
  appending, so a crash can at worst leave one torn record at the very end, which reading detects.
- `lock`: held with `flock` by the one process using the directory.
- `cursor`: `<segment> <offset>` of the first record not yet acknowledged, replaced atomically after every
  acknowledgement, so a restart resends at most the one record that was in flight.

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

__all__ = ('SegmentStore', 'Record', 'Dropped', 'SpoolLockedError')

_HEADER = struct.Struct('>4sIII')
_MAGIC = b'TGS1'
_SUFFIX = '.seg'
_CURSOR = 'cursor'
_LOCK = 'lock'

logger = logging.getLogger('tracegraph.exporters.spool')


class SpoolLockedError(RuntimeError):
    """Another live process holds the spool directory."""


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
            raise SpoolLockedError(f'spool_dir {str(self.directory)!r} is in use by another live process: {e}') from e
        return fd

    def close(self) -> None:
        """Release the directory lock (the kernel also releases it when the process dies)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- startup -------------------------------------------------------------------------------------------

    def _path(self, seq: int) -> Path:
        return self.directory / f'{seq:016d}{_SUFFIX}'

    def _recover(self) -> None:
        seqs = sorted(int(p.stem) for p in self.directory.glob(f'*{_SUFFIX}') if p.stem.isdigit())
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
        spans, offset = 0, start
        try:
            with self._path(seq).open('rb') as f:
                while offset + _HEADER.size <= size:
                    f.seek(offset)
                    magic, length, _crc, n = _HEADER.unpack(f.read(_HEADER.size))
                    if magic != _MAGIC:
                        break
                    spans += n
                    offset += _HEADER.size + length
        except OSError:
            pass
        return spans

    # --- writing -------------------------------------------------------------------------------------------

    def append(self, payload: bytes, spans: int) -> list[Dropped]:
        """Store one batch durably; returns what had to be dropped to stay within `max_bytes`."""
        record = _HEADER.pack(_MAGIC, len(payload), zlib.crc32(payload), spans) + payload
        dropped: list[Dropped] = []
        with self._lock:
            if len(record) > self.max_bytes:
                return [Dropped(spans=spans, bytes=len(record), reason='batch_too_large')]
            while self._segments and self._total() + len(record) > self.max_bytes:
                dropped.append(self._drop_oldest())
            if self._active is None:
                self._active = max(self._segments, default=self._cursor[0]) + 1
                self._segments[self._active] = _Segment(size=0, spans=0)
                if len(self._segments) == 1:
                    self._cursor = (self._active, 0)
            seg = self._segments[self._active]
            fd = os.open(self._path(self._active), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, record)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            seg.size += len(record)
            seg.spans += spans
            if seg.size >= self.segment_bytes:
                self._active = None
        return dropped

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
        return Dropped(spans=seg.spans, bytes=size, reason='spool_full')

    def _write_cursor(self) -> None:
        tmp = self.directory / f'{_CURSOR}.tmp'
        tmp.write_text(f'{self._cursor[0]} {self._cursor[1]}')
        os.replace(tmp, self.directory / _CURSOR)

    # --- reading and acknowledging -------------------------------------------------------------------------

    def next_record(self) -> tuple[Record | None, Dropped | None]:
        """The oldest record not yet acknowledged, or None when everything was; plus what was found corrupt."""
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
                continue  # dropped meanwhile to bound disk use
            if record is not None:
                return record, None
            with self._lock:
                if self._cursor[0] != seq:
                    continue
                lost = self._segments.get(seq, _Segment(size=size, spans=0))
                logger.error('tracegraph spool: segment %s is corrupt at byte %d; skipping its rest', seq, offset)
                lost_bytes = lost.size - offset
                self._segments.pop(seq, None)
                if seq == self._active:
                    self._active = None
                self._path(seq).unlink(missing_ok=True)
                self._cursor = (min(self._segments, default=seq + 1), 0)
                self._write_cursor()
                return None, Dropped(spans=lost.spans, bytes=lost_bytes, reason='corrupt')

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
        self._cursor = (min(self._segments, default=seq + 1), 0)
        self._write_cursor()
        self._path(seq).unlink(missing_ok=True)

    # --- state ---------------------------------------------------------------------------------------------

    @property
    def pending_spans(self) -> int:
        """Spans stored and not yet acknowledged."""
        with self._lock:
            return sum(s.spans for s in self._segments.values())

    @property
    def disk_bytes(self) -> int:
        """Bytes of segment files on disk."""
        with self._lock:
            return self._total()
