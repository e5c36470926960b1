"""`FileStatePersistence`: a run's snapshots in one JSON file, shared safely by several processes.

On disk: `{json_file}` holds the JSON list of snapshots (pydantic_graph's format, indented by 2), and
`{json_file}.lock` is an empty file whose `flock` serialises every read-modify-write of the list across threads and
processes. A write goes to `{json_file}.{pid}.tmp`, is fsynced, renamed over the file and the directory fsynced, so a
process killed mid-write leaves the previous list whole; a `.tmp` left by a dead writer is removed by the next
persistence to take the lock (no writer is active then), and one that could not be written (a full disk) is removed
at once, the error naming the file. `{json_file}.owner` is the run's owner lock (`persistence.ownership`): a run
whose process died is resumed from its last snapshot, a live one is never taken over.
"""

from __future__ import annotations

import fcntl
import glob
import os
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic, sleep
from typing import Any, TypeVar

import pydantic

from .. import _utils as _graph_utils
from .. import exceptions
from ..nodes import BaseNode, End
from . import (
    BaseStatePersistence,
    EndSnapshot,
    NodeSnapshot,
    RunEndT,
    Snapshot,
    SnapshotStatus,
    StateT,
    build_snapshot_list_type_adapter,
    find_runnable,
    mark_finished,
    mark_running,
    recording_run,
    take_next,
)
from .ownership import OwnerLock
from .stored import decode_snapshots

__all__ = ('FileStatePersistence',)

_R = TypeVar('_R')


@dataclass
class FileStatePersistence(BaseStatePersistence[StateT, RunEndT]):
    """A run's snapshots in the JSON file `json_file`: use one file per run, for every step of it.

    Example:
        ```python
        from pathlib import Path

        from tracegraph.persistence.file import FileStatePersistence

        persistence = FileStatePersistence(Path('runs') / 'run_123abc.json')
        print(persistence.json_file.name)
        #> run_123abc.json
        ```
    """

    json_file: Path
    """The file holding the run's snapshots."""
    _snapshots_type_adapter: pydantic.TypeAdapter[list[Snapshot[StateT, RunEndT]]] | None = field(
        default=None, init=False, repr=False
    )

    def __post_init__(self) -> None:
        self.json_file = Path(self.json_file)
        self._owner = OwnerLock(self.json_file.with_name(f'{self.json_file.name}.owner'))
        self._orphans_removed = False
        self._checked = False

    async def snapshot_node(self, state: StateT, next_node: BaseNode[StateT, Any, RunEndT]) -> None:
        snapshot = NodeSnapshot(state=state, node=next_node)
        await self._locked(lambda snapshots: snapshots.append(snapshot))

    async def snapshot_node_if_new(
        self, snapshot_id: str, state: StateT, next_node: BaseNode[StateT, Any, RunEndT]
    ) -> None:
        snapshot = NodeSnapshot(state=state, node=next_node)

        def add_if_new(snapshots: list[Snapshot[StateT, RunEndT]]) -> bool:
            if any(s.id == snapshot_id for s in snapshots):
                return False
            snapshots.append(snapshot)
            return True

        await self._locked(add_if_new)

    async def snapshot_end(self, state: StateT, end: End[RunEndT]) -> None:
        snapshot = EndSnapshot(state=state, result=end)
        await self._locked(lambda snapshots: snapshots.append(snapshot))
        self._owner.release()  # the run is over: another process may read it, nothing is left to take over

    async def release_run(self) -> None:
        self._owner.release()

    def close(self) -> None:
        self._owner.release()

    def record_run(self, snapshot_id: str) -> AbstractAsyncContextManager[None]:
        async def start() -> None:
            await self._locked(lambda snapshots: mark_running(find_runnable(snapshots, snapshot_id)))

        async def finish(duration: float, status: SnapshotStatus) -> None:
            await self._locked(lambda snapshots: mark_finished(_by_id(snapshots, snapshot_id), duration, status))

        return recording_run(start, finish, self._owner)

    async def load_next(self) -> NodeSnapshot[StateT, RunEndT] | None:
        found: list[NodeSnapshot[StateT, RunEndT]] = []

        def take(snapshots: list[Snapshot[StateT, RunEndT]]) -> bool:
            snapshot = take_next(snapshots, self._owner)
            if snapshot is not None:
                found.append(snapshot)
            return snapshot is not None

        await self._locked(take)
        return found[0] if found else None

    async def load_all(self) -> list[Snapshot[StateT, RunEndT]]:
        return await _graph_utils.run_in_executor(self._with_lock, self._read)

    def should_set_types(self) -> bool:
        return self._snapshots_type_adapter is None

    def set_types(self, state_type: type[StateT], run_end_type: type[RunEndT]) -> None:
        self._snapshots_type_adapter = build_snapshot_list_type_adapter(state_type, run_end_type)

    async def _locked(self, change: Callable[[list[Snapshot[StateT, RunEndT]]], object]) -> None:
        """Read the list, apply `change` (which returns False when it changed nothing) and write it back, all under
        the file lock, in a worker thread."""

        def read_change_write() -> None:
            snapshots = self._read()
            if change(snapshots) is not False:
                self._write(snapshots)

        await _graph_utils.run_in_executor(self._with_lock, read_change_write)

    def _with_lock(self, func: Callable[[], _R]) -> _R:
        fd = self._acquire(None)
        try:
            if not self._orphans_removed:
                self._remove_orphans()
                self._orphans_removed = True
            return func()
        finally:
            os.close(fd)

    @asynccontextmanager
    async def _lock(self, *, timeout: float = 1.0) -> AsyncGenerator[None]:
        """Hold the file lock inside the `async with` block (pydantic_graph 1.x's private hook, which tests patch).

        Raises:
            TimeoutError: another holder kept the lock for `timeout` seconds.
        """
        fd = await _graph_utils.run_in_executor(self._acquire, timeout)
        try:
            yield
        finally:
            os.close(fd)

    def _acquire(self, timeout: float | None) -> int:
        """Open `{json_file}.lock` and take its `flock` (waiting at most `timeout` seconds when given); its fd."""
        self.json_file.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.json_file.with_name(f'{self.json_file.name}.lock')
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel if this process dies
                return fd
            deadline = monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd
                except BlockingIOError:
                    if monotonic() >= deadline:
                        raise TimeoutError(f'Unable to acquire the lock on {lock_path} within {timeout} s') from None
                    sleep(0.005)
        except BaseException:
            os.close(fd)
            raise

    def _adapter(self) -> pydantic.TypeAdapter[list[Snapshot[StateT, RunEndT]]]:
        if self._snapshots_type_adapter is None:
            raise exceptions.GraphRuntimeError(
                'FileStatePersistence has no types yet: call `persistence.set_graph_types(graph)` (a run does) first.'
            )
        return self._snapshots_type_adapter

    def _read(self) -> list[Snapshot[StateT, RunEndT]]:
        try:
            content = self.json_file.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as error:
            raise exceptions.GraphRuntimeError(f'Could not read {self.json_file}: {error.strerror or error}') from error
        # Once read by this object, the file holds what it wrote since (or another process appended): checked.
        snapshots = decode_snapshots(self._adapter(), content, str(self.json_file), check_fields=not self._checked)
        self._checked = True
        return snapshots

    def _write(self, snapshots: list[Snapshot[StateT, RunEndT]]) -> None:
        data = self._adapter().dump_json(snapshots, indent=2)
        tmp = self.json_file.with_name(f'{self.json_file.name}.{os.getpid()}.tmp')
        try:
            # 0600: a run's state is this user's alone.
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'wb') as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.json_file)
        except OSError as error:
            tmp.unlink(missing_ok=True)
            raise exceptions.GraphRuntimeError(
                f'Could not write the snapshots to {self.json_file} ({error.strerror or error}); '
                'the file still holds the snapshots stored before this one.'
            ) from error
        _fsync_directory(self.json_file.parent)

    def _remove_orphans(self) -> None:
        """Remove `.tmp` files of writers that died mid-write (called holding the lock, so none is being written)."""
        for orphan in self.json_file.parent.glob(f'{glob.escape(self.json_file.name)}.*.tmp'):
            orphan.unlink(missing_ok=True)


def _by_id(snapshots: list[Snapshot[StateT, RunEndT]], snapshot_id: str) -> Snapshot[StateT, RunEndT]:
    return next(s for s in snapshots if s.id == snapshot_id)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
