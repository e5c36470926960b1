"""Writing bytes whole or not at all: what the spool's segments and the JSON Lines files both need on a full disk."""

from __future__ import annotations

import contextlib
import os

__all__ = ('write_whole',)


def write_whole(fd: int, data: bytes, offset: int, *, fsync: bool) -> None:
    """Write `data` at `offset` of the file `fd`, continuing short writes, then fsync it when asked.

    Raises:
        OSError: the write failed part-way (a full disk, an I/O error); the file was cut back to `offset` first
            (shrinking needs no space), so it holds nothing of `data`.
    """
    try:
        written = 0
        view = memoryview(data)
        while written < len(data):
            n = os.pwrite(fd, view[written:], offset + written)
            if n == 0:
                raise OSError(28, 'No space left on device (no progress)')
            written += n  # a short write is continued, never taken for the whole
        if fsync:
            os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, offset)
        raise
