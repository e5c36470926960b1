"""`PostgresStatePersistence`: the snapshots of many runs in one PostgreSQL database (psycopg 3, the `postgres`
extra), shared by many workers on many machines.

In the database: the table `tracegraph_snapshots` (`persistence.table`, created on first use) holds one row per
snapshot, appended, its status updated in place; each change is one transaction, and the writers of one run are
serialised by a transaction advisory lock. A run's owner lock is a session advisory lock (`pg_try_advisory_lock`,
keyed by a hash of the run id) held by the connection of the worker that drives it: the server releases it when that
session ends, so a worker that dies (or whose connection is lost) releases its runs, and another worker's
`iter_from_persistence` resumes them from their last snapshot (the node that was running runs again). The session
asks the server to probe an idle client every 10 s (`tcp_keepalives_*`), so a machine that vanishes from the
network releases its runs within about 30 s.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _utils as _graph_utils
from .. import exceptions
from . import RunEndT, StateT
from .table import SCHEMA, Database, TableStatePersistence

if TYPE_CHECKING:
    import psycopg

__all__ = ('PostgresStatePersistence',)

_R = TypeVar('_R')

_SESSION_SETTINGS = {'tcp_keepalives_idle': '10', 'tcp_keepalives_interval': '5', 'tcp_keepalives_count': '4'}
"""Server-side probes of an idle client, so a vanished machine's session (and its locks) ends."""


def _psycopg() -> Any:
    """The `psycopg` module, imported on first use so that the rest of tracegraph works without the extra."""
    try:
        import psycopg
    except ImportError as error:
        raise ImportError(
            "PostgresStatePersistence needs psycopg 3: install it with `pip install 'tracegraph[postgres]'`"
        ) from error
    return psycopg


def _lock_key(purpose: str, text: str) -> int:
    """A signed 64-bit advisory lock key for `text`, distinct per `purpose`."""
    return int.from_bytes(hashlib.sha256(f'tracegraph:{purpose}:{text}'.encode()).digest()[:8], 'big', signed=True)


_SCHEMA_KEY = _lock_key('schema', 'tracegraph_snapshots')


class _AdvisoryLock:
    """A run's owner lock: a session advisory lock of the persistence's connection."""

    def __init__(self, persistence: PostgresStatePersistence[Any, Any], key: int) -> None:
        # Weakly: no reference cycle, so a dropped persistence closes its connection at once (`__del__`), before
        # psycopg would warn that it was left open.
        self._persistence = weakref.ref(persistence)
        self._key = key
        self.held = False

    def _session(self) -> psycopg.Connection[Any]:
        persistence = self._persistence()
        assert persistence is not None, 'the lock outlived its persistence'
        return persistence.session()

    def try_take(self) -> bool:
        if not self.held:
            row = self._session().execute('SELECT pg_try_advisory_lock(%s)', (self._key,)).fetchone()
            self.held = bool(row and row[0])
        return self.held

    def forget(self) -> None:
        """The session ended, and the server let the lock go with it."""
        self.held = False

    def release(self) -> None:
        if self.held:
            self._session().execute('SELECT pg_advisory_unlock(%s)', (self._key,))
            self.held = False


class PostgresStatePersistence(TableStatePersistence[StateT, RunEndT]):
    """The snapshots of the run `run_id` in the PostgreSQL database `dsn` names (which may hold many runs).

    `dsn` is a libpq connection string or URL (`postgresql://user@host:5432/db`); libpq's `PG*` variables fill in
    what it leaves out. The object opens one connection on first use, closed by `close()` (or when it is dropped),
    which also releases the run if this object was driving it.

    Example:
        ```python
        from tracegraph.persistence.postgres import PostgresStatePersistence

        persistence = PostgresStatePersistence('postgresql://app@db.internal/app', run_id='order-42')
        print(persistence.run_id)
        #> order-42
        ```
    """

    _placeholder = '%s'

    def __init__(self, dsn: str, *, run_id: str) -> None:
        """Store run `run_id`'s snapshots in the database `dsn` names (the table is created on first use)."""
        self.dsn = dsn
        self.run_id = run_id
        self._advisory = _AdvisoryLock(self, _lock_key('owner', run_id))
        self._owner = self._advisory
        self._writers_key = _lock_key('writers', run_id)
        self._connection: psycopg.Connection[Any] | None = None
        self._lock = threading.RLock()

    def _where(self) -> str:
        return f'Run {self.run_id!r} in PostgreSQL'

    def session(self) -> psycopg.Connection[Any]:
        """The object's connection, opened (and the table created) on first use; it holds the run's owner lock."""
        if self._connection is None:
            db: psycopg.Connection[Any] = _psycopg().connect(self.dsn, autocommit=True)
            for name, value in _SESSION_SETTINGS.items():
                db.execute('SELECT set_config(%s, %s, false)', (name, value))
            with db.transaction():
                db.execute('SELECT pg_advisory_xact_lock(%s)', (_SCHEMA_KEY,))  # concurrent CREATEs collide
                for statement in SCHEMA:
                    db.execute(statement)
            self._connection = db
        return self._connection

    def close(self) -> None:
        """Close the connection: the run's owner lock, if held, goes with it."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
                self._advisory.forget()

    def __del__(self) -> None:
        connection = getattr(self, '_connection', None)
        if connection is not None:
            connection.close()

    async def _transaction(self, change: Callable[[Database], _R]) -> _R:
        """Run `change` in one transaction holding the run's writers lock, in a worker thread."""
        psycopg = _psycopg()

        def run() -> _R:
            with self._lock:
                db = self.session()
                with db.transaction():
                    db.execute('SELECT pg_advisory_xact_lock(%s)', (self._writers_key,))
                    return change(db)

        try:
            return await _graph_utils.run_in_executor(run)
        except psycopg.Error as error:
            lost = self._connection is not None and self._connection.closed
            if lost:  # the server ended the session, and with it the owner lock: this object no longer drives the run
                self._connection = None
                self._advisory.forget()
            raise exceptions.GraphRuntimeError(
                f'{self._where()}: {type(error).__name__}: {str(error).strip()}; the snapshots stored before stay '
                f'stored{" (the connection was lost: resume the run to go on)" if lost else ""}.'
            ) from error
