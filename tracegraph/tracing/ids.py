"""Run ids: random version-4 UUIDs, cheap to draw on every run."""

from __future__ import annotations

import random

__all__ = ('uuid4_hex',)

_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def uuid4_hex() -> str:
    """A random version-4 UUID as 32 hex digits, like `uuid.uuid4().hex`.

    Drawn from `random` (reseeded in forked children), as OpenTelemetry draws its trace ids: run ids must be
    unique, not secret, and `uuid.uuid4()` reads `os.urandom`, a system call per run.
    """
    return f'{(random.getrandbits(128) & _UUID4_CLEAR) | _UUID4_SET:032x}'
