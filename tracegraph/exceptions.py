"""Exceptions raised while defining or running a graph."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .persistence import SnapshotStatus

__all__ = ('GraphSetupError', 'GraphRuntimeError', 'GraphNodeStatusError', 'GraphBuildingError', 'GraphValidationError')


class GraphSetupError(TypeError):
    """A graph is defined wrongly: a node id used twice, an edge to a node the graph lacks, a bad return hint."""

    message: str
    """What is wrong."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class GraphRuntimeError(RuntimeError):
    """A graph run was driven wrongly: a node not in the graph, a run that has ended, a bad node return value."""

    message: str
    """What is wrong."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class GraphNodeStatusError(GraphRuntimeError):
    """A persisted node snapshot was to be run in a status other than `created` or `pending`."""

    def __init__(self, actual_status: SnapshotStatus) -> None:
        self.actual_status = actual_status
        """The status the snapshot had."""
        super().__init__(f"Incorrect snapshot status {actual_status!r}, must be 'created' or 'pending'.")

    @classmethod
    def check(cls, status: SnapshotStatus) -> None:
        """Raise unless a snapshot in `status` may be run."""
        if status not in {'created', 'pending'}:
            raise cls(status)


class GraphBuildingError(ValueError):
    """Raised by pydantic_graph 1.x's graph builder; defined so code that catches it still imports (no builder)."""

    message: str
    """What is wrong."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class GraphValidationError(ValueError):
    """Raised by pydantic_graph 1.x's graph validation; defined so code that catches it keeps importing."""

    message: str
    """What is wrong."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)
