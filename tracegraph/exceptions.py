"""Exceptions raised while defining or running a graph."""

from __future__ import annotations

__all__ = ('GraphSetupError', 'GraphRuntimeError')


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
