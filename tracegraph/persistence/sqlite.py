"""`SQLiteStatePersistence`: the snapshots of many runs in one SQLite database (stdlib `sqlite3`, WAL), shared by
many processes; the embedded default for durable runs.

On disk: the table `tracegraph_snapshots` (`persistence.table`) holds one row per snapshot, appended, its status
updated in place. Every change is one `BEGIN IMMEDIATE` transaction, which SQLite makes atomic and durable across a
crash (`synchronous=FULL`). `{database}.owners/{run hash}.lock` is each run's owner lock (`persistence.ownership`): a
run whose process died is resumed from its last snapshot (the node that was running runs again), a live one is never
taken over. The database and lock files are created 0600 (less where the umask says so).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .. import _utils as _graph_utils
from .. import exceptions
from . import RunEndT, StateT
from .ownership import OwnerLock
from .table import SCHEMA, Database, TableStatePersistence

__all__ = ('SQLiteStatePersistence',)

_R = TypeVar('_R')


class SQLiteStatePersistence(TableStatePersistence[StateT, RunEndT]):
    """The snapshots of the run `run_id` in the SQLite database file `database` (which may hold many runs).

    Example:
        ```python
        from tracegraph.persistence.sqlite import SQLiteStatePersistence

        persistence = SQLiteStatePersistence('runs.sqlite3', run_id='order-42')
        print(persistence.run_id)
        #> order-42
        ```
    """

    def __init__(self, database: str | Path, *, run_id: str) -> None:
        """Store run `run_id`'s snapshots in `database` (created with its table on first use)."""
        self.database = Path(database)
        self.run_id = run_id
        digest = hashlib.sha256(run_id.encode()).hexdigest()[:32]
        self._owner = OwnerLock(self.database.with_name(f'{self.database.name}.owners') / f'{digest}.lock')
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the connection and let the run go."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            self._owner.release()

    def _where(self) -> str:
        return f'Run {self.run_id!r} in {self.database}'

    async def _transaction(self, change: Callable[[Database], _R]) -> _R:
        """Run `change` in one `BEGIN IMMEDIATE` transaction (which excludes every other writer), in a worker thread."""

        def run() -> _R:
            with self._lock:
                db = self._connect()
                db.execute('BEGIN IMMEDIATE')
                try:
                    result = change(db)
                except BaseException:
                    db.rollback()
                    raise
                db.commit()
                return result

        try:
            return await _graph_utils.run_in_executor(run)
        except sqlite3.Error as error:
            raise exceptions.GraphRuntimeError(
                f'{self._where()}: {error}; the snapshots stored before stay stored.'
            ) from error

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self.database.parent.mkdir(parents=True, exist_ok=True)
            # Created 0600 before SQLite opens it: its WAL and shared-memory files take the database's mode.
            os.close(os.open(self.database, os.O_RDWR | os.O_CREAT, 0o600))
            db = sqlite3.connect(self.database, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute('PRAGMA journal_mode=WAL')
            db.execute('PRAGMA synchronous=FULL')
            for statement in SCHEMA:
                db.execute(statement)
            self._connection = db
        return self._connection
