"""Who is running a persisted run now: a lock that the operating system (an `flock`) or the database (an advisory
lock of the session) drops when its holder dies.

A persistence holds its run's owner lock from handing out a snapshot (`load_next`) or starting one (`record_run`) until
the run's end is stored (or the persistence object is dropped): one process drives a run at a time. A snapshot left
`running` or `pending` by a process that died is taken over by the next
`load_next` only once its lock can be had, so a run still alive in another process is never taken over, and nothing
has to be cleaned up after a crash (the kernel releases a dead process's locks).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Protocol

__all__ = ('Owner', 'OwnerLock')


class Owner(Protocol):
    """The owner lock of one run, whatever holds it; a holder that dies loses it without running any code."""

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        ...

    def try_take(self) -> bool:
        """Take the lock unless another holder has it; True when this object holds it (already, or now)."""
        ...

    def release(self) -> None:
        """Let the lock go (nothing when not held)."""
        ...


class OwnerLock:
    """The owner lock of one run: the file `path`, created 0600 when missing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def try_take(self) -> bool:
        """Take the lock unless another holder (another process, or another persistence object) has it."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Let the lock go (closing the file releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.release()
