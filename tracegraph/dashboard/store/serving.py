"""Which `tracegraph serve` holds a store file, so other commands can go through it instead.

DuckDB lets one process open a database file at a time (even read-only opens are refused while another process
writes), so `tracegraph report`, `tracegraph demo` and a notebook's `Store` cannot open a file `serve` holds.
`serve` therefore writes `<db>.serving.json` next to the file while it runs — `{"url", "pid"}` of its HTTP
endpoint — and removes it when it stops; `serving_url(db)` reads it back, ignoring a file whose process is gone
(left by a `serve` that was killed). The others then send to that URL (the demo) or read through its JSON API
(`RemoteStore`, the report), and say so.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Generator
from pathlib import Path

__all__ = ('announce', 'serving_url')


def _sidecar(db: Path) -> Path:
    return db.with_name(db.name + '.serving.json')


@contextlib.contextmanager
def announce(db: Path, url: str) -> Generator[None]:
    """While inside, `serving_url(db)` answers `url` (for `serve`; nothing is written for `:memory:`)."""
    if str(db) == ':memory:':
        yield
        return
    sidecar = _sidecar(db)
    sidecar.write_text(json.dumps({'url': url, 'pid': os.getpid()}))
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            sidecar.unlink()


def serving_url(db: Path) -> str | None:
    """The URL of the running `tracegraph serve` that holds `db`, if one announced itself and still runs."""
    try:
        data = json.loads(_sidecar(db).read_text())
        url, pid = str(data['url']), int(data['pid'])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, owned by someone else
        pass
    return url
