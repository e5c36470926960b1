"""Nodes, the edges between them, and the values a node's `run` hands to the graph."""

from __future__ import annotations

import copy
import inspect
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, is_dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, get_origin, get_type_hints
from uuid import uuid4

from typing_extensions import Never, Self, TypeVar

from . import _utils, exceptions

if TYPE_CHECKING:
    from .history import StateT
else:
    StateT = TypeVar('StateT', default=None)

__all__ = (
    'GraphRunContext',
    'BaseNode',
    'End',
    'Edge',
    'NodeDef',
    'DepsT',
    'StateT',
    'RunEndT',
    'NodeRunEndT',
    'generate_snapshot_id',
)

RunEndT = TypeVar('RunEndT', covariant=True, default=None)
"""Type of the value a graph run ends with."""
NodeRunEndT = TypeVar('NodeRunEndT', covariant=True, default=Never)
"""Type of the value a node may end the run with (`Never` for nodes that never return `End`)."""
DepsT = TypeVar('DepsT', default=None, contravariant=True)
"""Type of the dependencies handed to every node."""


@dataclass
class GraphRunContext(Generic[StateT, DepsT]):
    """What a node's `run` receives: the run's mutable state and its dependencies."""

    state: StateT
    """The state of the run, shared by all its nodes."""
    deps: DepsT
    """The dependencies of the run (clients, settings, ...)."""


class BaseNode(ABC, Generic[StateT, DepsT, NodeRunEndT]):
    """A node of a graph: subclass it as a dataclass and implement `run`.

    The return annotation of `run` defines the node's outgoing edges: every node class named there
    may come next, and `End[T]` means the node may end the run with a `T`.

    Example:
        ```python
        from __future__ import annotations

        from dataclasses import dataclass

        from tracegraph import BaseNode, End, Graph, GraphRunContext


        @dataclass
        class Double(BaseNode[None, None, int]):
            value: int

            async def run(self, ctx: GraphRunContext) -> Double | End[int]:
                return Double(self.value * 2) if self.value < 10 else End(self.value)


        doubling = Graph(nodes=[Double])
        print(doubling.run_sync(Double(3)).output)
        #> 12
        ```
    """

    docstring_notes: ClassVar[bool] = False
    """Set to `True` to show the class docstring as a note in mermaid diagrams (see `get_note`)."""

    @abstractmethod
    async def run(self, ctx: GraphRunContext[StateT, DepsT]) -> BaseNode[StateT, DepsT, Any] | End[NodeRunEndT]:
        """Run the node and return the next node to run, or `End` to finish the run.

        Args:
            ctx: the run's state and dependencies.

        Returns:
            The next node, or `End` with the run's output.
        """
        ...

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A 1.x node overrides `get_node_id`; the engine asks `get_id`, which then is the same method.
        if 'get_node_id' in cls.__dict__ and 'get_id' not in cls.__dict__:
            cls.get_id = cls.__dict__['get_node_id']

    @classmethod
    def get_id(cls) -> str:
        """The node's id in its graph: the class name unless overridden (as `get_id` or `get_node_id`)."""
        return cls.__name__

    @classmethod
    def get_node_id(cls) -> str:
        """The node's id under its pydantic_graph 1.x name: `get_id()`."""
        return cls.get_id()

    def get_snapshot_id(self) -> str:
        """The id of the persistence snapshot this node instance belongs to, made (`{node_id}:{hex}`) when asked."""
        snapshot_id: str | None = self.__dict__.get('__snapshot_id')
        if snapshot_id is None:
            snapshot_id = _snapshot_id_generator()(self.get_id())
            object.__setattr__(self, '__snapshot_id', snapshot_id)  # also on frozen dataclasses
        return snapshot_id

    def set_snapshot_id(self, snapshot_id: str) -> None:
        """Tie this node instance to the persistence snapshot `snapshot_id` (done when a run is restored)."""
        object.__setattr__(self, '__snapshot_id', snapshot_id)

    def deep_copy(self) -> Self:
        """A deep copy of the node (its snapshot id included)."""
        return copy.deepcopy(self)

    @classmethod
    def get_note(cls) -> str | None:
        """The note shown beside the node in mermaid diagrams.

        By default the class docstring when `docstring_notes` is true, otherwise None. The signature docstring
        that `dataclass` generates for undocumented classes is not a note.
        """
        if not cls.docstring_notes:
            return None
        docstring = cls.__doc__
        if docstring and is_dataclass(cls) and docstring.startswith(f'{cls.__name__}('):
            return None
        return inspect.cleandoc(docstring) if docstring else None

    @classmethod
    def get_node_def(cls, local_ns: dict[str, Any] | None) -> NodeDef[StateT, DepsT, NodeRunEndT]:
        """Read the node's edges from the return annotation of its `run` method.

        Args:
            local_ns: extra namespace for resolving forward references, usually the one the `Graph` is created in.

        Raises:
            GraphSetupError: when `run` has no return annotation, a name in it cannot be resolved, or it names
                something that is neither a node nor `End`.
        """
        try:
            hints = get_type_hints(cls.run, localns=local_ns, include_extras=True)
        except NameError as e:
            raise _UnresolvedReturnHint(f'Cannot resolve the return annotation of `{cls.__qualname__}.run`: {e}') from e
        if 'return' not in hints:
            raise exceptions.GraphSetupError(f'Node {cls} is missing a return type hint on its `run` method')

        next_node_edges: dict[str, Edge] = {}
        end_edge: Edge | None = None
        returns_base_node = False
        for member in _utils.get_union_args(hints['return']):
            return_type, annotations = _utils.unpack_annotated(member)
            edge = next((a for a in annotations if isinstance(a, Edge)), Edge(None))
            origin = get_origin(return_type) or return_type
            if origin is End:
                end_edge = edge
            elif origin is BaseNode:
                returns_base_node = True
            elif isinstance(origin, type) and issubclass(origin, BaseNode):
                next_node_edges[origin.get_id()] = edge
            else:
                raise exceptions.GraphSetupError(f'Invalid return type: {return_type}')
        return NodeDef(
            node=cls,
            node_id=cls.get_id(),
            note=cls.get_note(),
            next_node_edges=next_node_edges,
            end_edge=end_edge,
            returns_base_node=returns_base_node,
        )


class _UnresolvedReturnHint(exceptions.GraphSetupError, NameError):
    """A name in a `run` return annotation is not defined: a setup error, and the `NameError` the classic engine let
    through, so code catching either keeps working."""


@dataclass
class End(Generic[RunEndT]):
    """Returned by a node to end the run with `data` as its output."""

    data: RunEndT
    """The run's output."""

    def deep_copy_data(self) -> End[RunEndT]:
        """A copy whose `data` is deep-copied, with the same snapshot id."""
        if self.data is None:
            return self
        end = End(copy.deepcopy(self.data))
        end.set_snapshot_id(self.get_snapshot_id())
        return end

    def get_snapshot_id(self) -> str:
        """The id of the end snapshot of the run (`end:{hex}`), made when first asked."""
        snapshot_id: str | None = self.__dict__.get('__snapshot_id')
        if snapshot_id is None:
            snapshot_id = self.__dict__['__snapshot_id'] = _snapshot_id_generator()('end')
        return snapshot_id

    def set_snapshot_id(self, set_id: str) -> None:
        """Tie this `End` to the snapshot `set_id`."""
        self.__dict__['__snapshot_id'] = set_id


def generate_snapshot_id(node_id: str) -> str:
    """A new snapshot id for a node whose id is `node_id`: `{node_id}:{32 hex}`.

    Looked up at every call under each module name upstream's tests patch (`SNAPSHOT_ID_PATCH_POINTS`), so a test
    that patches any of them gets stable ids.
    """
    return f'{node_id}:{uuid4().hex}'


_GENERATE_SNAPSHOT_ID = generate_snapshot_id

SNAPSHOT_ID_PATCH_POINTS = ('tracegraph.nodes', 'tracegraph.basenode', 'tracegraph.v1.nodes', 'tracegraph.v1.basenode')
"""Modules whose `generate_snapshot_id` a test may replace: pydantic_graph 0.0.40-0.0.53 tests patch `nodes`,
1.x tests `basenode` (pydantic_ai 1.x's own tests still `nodes`), each under the import they were run with."""


def _snapshot_id_generator() -> Callable[[str], str]:
    """The `generate_snapshot_id` of the first patch point that replaced it, else the real one."""
    modules = sys.modules
    for name in SNAPSHOT_ID_PATCH_POINTS:
        module = modules.get(name)
        if module is not None:
            found = module.__dict__.get('generate_snapshot_id', _GENERATE_SNAPSHOT_ID)
            if found is not _GENERATE_SNAPSHOT_ID:
                return found
    return _GENERATE_SNAPSHOT_ID


@dataclass(frozen=True)
class Edge:
    """Labels an edge: `Annotated[NextNode, Edge(label='retry')]` in a `run` return annotation.

    Frozen, hence hashable: `typing` hashes the metadata of `Annotated` members of a union.
    """

    label: str | None
    """Text shown on the edge in mermaid diagrams."""


@dataclass
class NodeDef(Generic[StateT, DepsT, NodeRunEndT]):
    """What a graph knows of one node class: its id, note and outgoing edges."""

    node: type[BaseNode[StateT, DepsT, NodeRunEndT]]
    """The node class."""
    node_id: str
    """Its id in the graph."""
    note: str | None
    """Its mermaid note."""
    next_node_edges: dict[str, Edge]
    """Ids of the nodes that may come next, with their edges."""
    end_edge: Edge | None
    """The edge to the end of the run, when the node may return `End`."""
    returns_base_node: bool
    """The node is annotated as returning `BaseNode`, so any node may come next."""
