"""`Graph`: a set of nodes whose `run` return hints define the edges, and the ways to run it."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import sys
import types
import warnings
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic

import pydantic
import typing_extensions
from typing_extensions import TypeVar

from . import _utils, exceptions, mermaid
from .history import EndStep, HistoryStep, NodeStep, StateT, deep_copy_state, nodes_schema_var, omitting_none
from .nodes import BaseNode, DepsT, End, NodeDef, RunEndT
from .persistence import BaseStatePersistence, next_attempt
from .persistence._utils import recording_traceparent
from .persistence.in_mem import SimpleStatePersistence
from .run import GraphRun, GraphRunResult
from .run_scope import Resume, RunScope
from .tracing.instrument import Instrumentation
from .tracing.instrumentation_settings import InstrumentationSettings
from .tracing.propagation import context_from_traceparent, current_traceparent, parse_traceparent
from .tracing.runtrace import RunTrace

__all__ = ('Graph', 'GraphRun', 'GraphRunResult')

_TRACE_IDS = 'tracegraph_trace_ids'
"""The dump context key that keeps a history's trace ids in its JSON."""

T = TypeVar('T')


@dataclass(init=False)
class Graph(Generic[StateT, DepsT, RunEndT]):
    """A graph: nodes whose `run` return annotations say which node may come next.

    Example (the classic never-42 graph):
        ```python
        from __future__ import annotations

        from dataclasses import dataclass

        from tracegraph import BaseNode, End, Graph, GraphRunContext


        @dataclass
        class MyState:
            number: int


        @dataclass
        class Increment(BaseNode[MyState]):
            async def run(self, ctx: GraphRunContext) -> Check42:
                ctx.state.number += 1
                return Check42()


        @dataclass
        class Check42(BaseNode[MyState, None, int]):
            async def run(self, ctx: GraphRunContext) -> Increment | End[int]:
                if ctx.state.number == 42:
                    return Increment()
                return End(ctx.state.number)


        never_42_graph = Graph(nodes=(Increment, Check42))
        state = MyState(41)
        print(never_42_graph.run_sync(Increment(), state=state).output)
        #> 43
        ```
    """

    name: str | None
    node_defs: dict[str, NodeDef[StateT, DepsT, RunEndT]]
    snapshot_state: Callable[[StateT], StateT]
    instrumentation: InstrumentationSettings = field(repr=False)
    yield_start_node: bool = field(repr=False)
    _state_type: type[StateT] | _utils.Unset = field(repr=False)
    _run_end_type: type[RunEndT] | _utils.Unset = field(repr=False)

    default_yield_start_node: ClassVar[bool] = False
    """The era default of `yield_start_node`: the only thing `tracegraph.v1.Graph` (pydantic_graph 0.0.54+) changes."""

    def __init__(
        self,
        *,
        nodes: Sequence[type[BaseNode[StateT, DepsT, RunEndT]]],
        name: str | None = None,
        state_type: type[StateT] | _utils.Unset = _utils.UNSET,
        run_end_type: type[RunEndT] | _utils.Unset = _utils.UNSET,
        snapshot_state: Callable[[StateT], StateT] = deep_copy_state,
        auto_instrument: bool = True,
        instrumentation: InstrumentationSettings | None = None,
        yield_start_node: bool | None = None,
    ) -> None:
        """Create a graph and check its edges.

        Args:
            nodes: the node classes; their ids must be unique and every node an edge leads to must be among them.
            name: the graph's name; inferred from the variable it is assigned to on the first run when None.
            state_type: the state's type, inferred from the nodes' generic parameters when not given.
            run_end_type: the output's type, inferred from the nodes' generic parameters when not given.
            snapshot_state: copies the state into each `NodeStep` of the history, after its node ran.
            auto_instrument: record spans and metrics of runs (when an OpenTelemetry SDK is configured).
            instrumentation: what to record and where; defaults to `InstrumentationSettings()`.
            yield_start_node: `async for node in run` yields the start node first, before running it, as
                pydantic_graph 0.0.54 and later do (upstream PR #1412); the default is the era's
                (`default_yield_start_node`): False here (up to 0.0.53, where the first node yielded is the one the
                start node returned), True for `tracegraph.v1.Graph`.

        Raises:
            GraphSetupError: a node id is used twice, an edge leads to a node not in `nodes`, or a return hint is bad.
        """
        self.name = name
        self._state_type = state_type
        self._run_end_type = run_end_type
        self.snapshot_state = snapshot_state
        self.instrumentation = instrumentation or InstrumentationSettings()
        self.yield_start_node = self.default_yield_start_node if yield_start_node is None else yield_start_node
        self._instrumentation = Instrumentation(self.instrumentation) if auto_instrument else None

        parent_namespace = _utils.get_parent_namespace(inspect.currentframe())
        self.node_defs = {}
        for node in nodes:
            node_id = node.get_id()
            if existing := self.node_defs.get(node_id):
                raise exceptions.GraphSetupError(
                    f'Node ID `{node_id}` is not unique — found on {existing.node} and {node}'
                )
            self.node_defs[node_id] = node.get_node_def(parent_namespace)
        self._validate_edges()

    @cached_property
    def _node_ids(self) -> dict[type[Any], str]:
        """Each node class's id, from `node_defs`: what a run's steps look nodes up by instead of calling `get_id()`."""
        return {node_def.node: node_id for node_id, node_def in self.node_defs.items()}

    @cached_property
    def _edges_json(self) -> str:
        """The declared edges as the run span records them (`tracing.attributes.GRAPH_EDGES`), built once."""
        every = list(self.node_defs)
        edges: dict[str, list[str]] = {}
        for node_id, node_def in self.node_defs.items():
            targets = every if node_def.returns_base_node else list(node_def.next_node_edges)
            edges[node_id] = [*targets, *(['End'] if node_def.end_edge is not None else [])]
        return json.dumps(edges, separators=(',', ':'), ensure_ascii=False)

    def _validate_edges(self) -> None:
        missing: dict[str, list[str]] = {}
        for node_id, node_def in self.node_defs.items():
            for next_id in node_def.next_node_edges:
                if next_id not in self.node_defs:
                    missing.setdefault(next_id, []).append(f'`{node_id}`')
        if not missing:
            return
        problems = [f'`{next_id}` is referenced by {_utils.comma_and(refs)}' for next_id, refs in missing.items()]
        if len(problems) == 1:
            raise exceptions.GraphSetupError(f'{problems[0]} but not included in the graph.')
        listing = '\n'.join(f' {p}' for p in problems)
        raise exceptions.GraphSetupError(f'Nodes are referenced in the graph but not included in the graph:\n{listing}')

    async def run(
        self: Graph[StateT, DepsT, T],
        start_node: BaseNode[StateT, DepsT, T],
        *,
        state: StateT = None,
        deps: DepsT = None,
        persistence: BaseStatePersistence[StateT, T] | None = None,
        infer_name: bool = True,
        span: AbstractContextManager[Any] | None = None,
    ) -> GraphRunResult[StateT, T]:
        """Run the graph from `start_node` until a node returns `End`.

        Args:
            start_node: the first node to run.
            state: the state shared by the run's nodes (mutated in place).
            deps: the dependencies handed to the run's nodes.
            persistence: where to record the run's snapshots (the 0.0.40+ API); a classic history when None.
            infer_name: infer the graph's name from the caller's variables when it has none.
            span: a context manager entered around the run; when it is or yields an OpenTelemetry span,
                that span is the run span.

        Returns:
            The output, final state, history, persistence and trace id of the run.
        """
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        async with self.iter(
            start_node, state=state, deps=deps, persistence=persistence, infer_name=False, span=span
        ) as graph_run:
            async for _ in graph_run:
                pass
        result = graph_run.result
        assert result is not None, 'a run left its loop without ending'
        return result

    def run_sync(
        self: Graph[StateT, DepsT, T],
        start_node: BaseNode[StateT, DepsT, T],
        *,
        state: StateT = None,
        deps: DepsT = None,
        persistence: BaseStatePersistence[StateT, T] | None = None,
        infer_name: bool = True,
        span: AbstractContextManager[Any] | None = None,
    ) -> GraphRunResult[StateT, T]:
        """Run the graph from synchronous code, on this thread's event loop (made when it has none); see `run`.

        Raises:
            GraphRuntimeError: when called from a thread whose event loop is running (use `await graph.run(...)`).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise exceptions.GraphRuntimeError(
                '`run_sync` cannot be called while an event loop is running in this thread; '
                'use `await graph.run(...)` instead.'
            )
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        # The thread's own loop, kept between calls as the classic engine does: clients bound to it survive.
        return _utils.get_event_loop().run_until_complete(
            self.run(start_node, state=state, deps=deps, persistence=persistence, infer_name=False, span=span)
        )

    def iter(
        self: Graph[StateT, DepsT, T],
        start_node: BaseNode[StateT, DepsT, T],
        *,
        history: list[HistoryStep[StateT, T]] | None = None,
        state: StateT = None,
        deps: DepsT = None,
        persistence: BaseStatePersistence[StateT, T] | None = None,
        infer_name: bool = True,
        span: AbstractContextManager[Any] | None = None,
        yield_start_node: bool | None = None,
        _resume: Resume | None = None,
    ) -> RunScope[StateT, DepsT, T]:
        """Start a run and hand it over to be driven by `async for` or `await run.next(...)`.

        Leaving the `async with` before the run reached `End` ends it as interrupted.

        Args:
            start_node: the first node to run.
            history: the history so far, appended to in place; pass a loaded history to resume a run (the classic
                API). Not together with `persistence`.
            state: the state shared by the run's nodes.
            deps: the dependencies handed to the run's nodes.
            persistence: where to record the run's snapshots (the 0.0.40+ API), so it can be resumed with
                `iter_from_persistence`. Not together with `history`.
            infer_name: infer the graph's name from the caller's variables when it has none.
            span: a context manager entered around the run; when it is or yields an OpenTelemetry span,
                that span is the run span.
            yield_start_node: `async for` yields the start node before running it, as pydantic_graph 0.0.54+
                does; default: the graph's `yield_start_node` (False, the classic behaviour).

        Returns:
            An async context manager whose `async with` gives the `GraphRun`.

        Raises:
            TypeError: both `history` and `persistence` were given.
        """
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        if history is not None and persistence is not None:
            raise TypeError(
                'Pass `history=` (the classic API) or `persistence=` (the 0.0.40+ API) to a run, not both; '
                'a `FullStatePersistence` keeps every step of a persisted run.'
            )
        if persistence is not None and _resume is None:
            persistence.set_graph_types(self)
        return RunScope(
            self,
            start_node,
            instrumentation=self._instrumentation,
            history=history,
            state=state,
            deps=deps,
            persistence=persistence,
            span=span,
            yield_start_node=self.yield_start_node if yield_start_node is None else yield_start_node,
            resume=_resume,
        )

    @asynccontextmanager
    async def iter_from_persistence(
        self: Graph[StateT, DepsT, T],
        persistence: BaseStatePersistence[StateT, T],
        *,
        deps: DepsT = None,
        span: AbstractContextManager[Any] | None = None,
        infer_name: bool = True,
        join_trace: bool = False,
        yield_start_node: bool | None = None,
    ) -> AsyncGenerator[GraphRun[StateT, DepsT, T]]:
        """Continue a persisted run from its next `created` snapshot (in this process or another one).

        The new run span links to the trace of the run that made the snapshot and carries
        `tracegraph.run.resumed_from`; with `join_trace=True` it is a child of that run's span instead, so every
        part of the run is one trace.

        Args:
            persistence: the persistence the run recorded its snapshots in.
            deps: the dependencies handed to the run's nodes.
            span: a context manager entered around the run; see `iter`.
            infer_name: infer the graph's name from the caller's variables when it has none.
            join_trace: continue the trace of the run that made the snapshot instead of linking to it.
            yield_start_node: see `iter`.

        Raises:
            GraphRuntimeError: the persistence holds no snapshot waiting to run.
        """
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        persistence.set_graph_types(self)
        try:
            snapshot = await persistence.load_next()
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to see
                await persistence.release_run()  # taken but not stored as taken: another attempt may take it
            raise
        if snapshot is None:
            raise exceptions.GraphRuntimeError('Unable to restore snapshot from state persistence.')
        snapshot.node.set_snapshot_id(snapshot.id)
        origin = parse_traceparent(snapshot.traceparent)
        resume = Resume(
            snapshot_id=snapshot.id,
            resumed_from=(f'{origin.trace_id:032x}', f'{origin.span_id:016x}') if origin is not None else None,
            parent=context_from_traceparent(snapshot.traceparent) if join_trace else None,
            attempt=next_attempt(snapshot),
        )
        async with self.iter(
            snapshot.node,
            state=snapshot.state,
            deps=deps,
            persistence=persistence,
            infer_name=False,
            span=span,
            yield_start_node=yield_start_node,
            _resume=resume,
        ) as graph_run:
            yield graph_run

    async def initialize(
        self: Graph[StateT, DepsT, T],
        node: BaseNode[StateT, DepsT, T],
        persistence: BaseStatePersistence[StateT, T],
        *,
        state: StateT = None,
        infer_name: bool = True,
    ) -> None:
        """Record `node` as the first snapshot of a run in `persistence`, to be run by `iter_from_persistence`."""
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        persistence.set_graph_types(self)
        with recording_traceparent(current_traceparent()):
            await persistence.snapshot_node(state, node)

    def get_nodes(self) -> Sequence[type[BaseNode[StateT, DepsT, RunEndT]]]:
        """The graph's node classes."""
        return [node_def.node for node_def in self.node_defs.values()]

    @cached_property
    def inferred_types(self) -> tuple[type[StateT], type[RunEndT]]:
        """The state and output types, as given or inferred from the nodes' generic parameters.

        A type the nodes do not give is None, as in pydantic_graph 0.0.40+ (a graph of nodes without generic
        arguments has no output type); the classic `_get_run_end_type()` raises instead.
        """
        state_type, run_end_type = self._declared_types()
        found: Any = (
            state_type if _utils.is_set(state_type) else None,
            run_end_type if _utils.is_set(run_end_type) else None,
        )
        return found

    async def next(
        self: Graph[StateT, DepsT, T],
        node: BaseNode[StateT, DepsT, T],
        history: list[HistoryStep[StateT, T]] | BaseStatePersistence[StateT, T] | None = None,
        *,
        persistence: BaseStatePersistence[StateT, T] | None = None,
        state: StateT = None,
        deps: DepsT = None,
        infer_name: bool = True,
    ) -> BaseNode[StateT, DepsT, Any] | End[T]:
        """Run one node outside of a `GraphRun`: the classic `next(node, history)`, which appends the node's step to
        `history`, or the deprecated 0.0.40+ `next(node, persistence)`, which records its snapshots there.

        Warns:
            DeprecationWarning: for the 0.0.40+ form, as pydantic_graph does (use `run.next()` inside `graph.iter`).

        Raises:
            GraphRuntimeError: `node` is `End` or not in the graph, or its `run` returned neither a node nor `End`.
        """
        if isinstance(history, BaseStatePersistence):
            history, persistence = None, history
        if history is None:
            warnings.warn(
                '`next` is deprecated, use `async with graph.iter(...) as run:  run.next()` instead',
                DeprecationWarning,
                stacklevel=2,
            )
            if persistence is None:
                persistence = SimpleStatePersistence()
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        if persistence is not None:
            persistence.set_graph_types(self)
        if self._instrumentation is None:
            trace = RunTrace()
        else:
            # Outside a run: the node span is a child of the current span, and no run span is opened.
            trace = self._instrumentation.start_run(
                graph_name=self.name or 'unnamed_graph', start_node_id='', run_span=False
            )
        # A run of one step over the caller's history; it is not entered, so it opens no span of its own.
        step_run = GraphRun(
            self, node, history=[] if history is None else history, state=state, deps=deps, trace=trace,
            persistence=persistence,
        )  # fmt: skip
        try:
            return await step_run.next(node)
        finally:
            trace.finish(ended=False, error=None, output=None)

    def dump_history(
        self: Graph[StateT, DepsT, T],
        history: list[HistoryStep[StateT, T]],
        *,
        indent: int | None = None,
        trace_ids: bool = False,
    ) -> bytes:
        """The history of a run as JSON; nodes carry a `node_id` key so `load_history` can rebuild them.

        Args:
            history: The steps to dump.
            indent: Indentation of the JSON, None for one line.
            trace_ids: Also write each node step's `trace_id` and `span_id` (when a span ran it), so a run continued
                from the loaded history in another process links to the trace of the steps before. Off by default,
                as the classic format has no such keys.
        """
        return self.history_type_adapter.dump_json(
            history, indent=indent, context={_TRACE_IDS: True} if trace_ids else None
        )

    def load_history(self, json_bytes: str | bytes | bytearray) -> list[HistoryStep[StateT, RunEndT]]:
        """Rebuild a history dumped by `dump_history`.

        Raises:
            pydantic.ValidationError: the JSON does not describe a history of this graph.
        """
        return self.history_type_adapter.validate_json(json_bytes)

    @cached_property
    def history_type_adapter(self) -> pydantic.TypeAdapter[list[HistoryStep[StateT, RunEndT]]]:
        """The pydantic `TypeAdapter` of this graph's histories."""
        nodes = [node_def.node for node_def in self.node_defs.values()]
        state_t = self._get_state_type()
        end_t = self._get_run_end_type()
        token = nodes_schema_var.set(nodes)
        try:
            step_t = Annotated[
                omitting_none(NodeStep[state_t, end_t], 'trace_id', 'span_id', unless=_TRACE_IDS) | EndStep[end_t],
                pydantic.Discriminator('kind'),
            ]
            return pydantic.TypeAdapter(list[step_t])  # pyright: ignore[reportInvalidTypeForm]
        finally:
            nodes_schema_var.reset(token)

    def mermaid_code(
        self,
        *,
        start_node: Sequence[mermaid.NodeIdent] | mermaid.NodeIdent | None = None,
        title: str | typing_extensions.Literal[False] | None = None,
        edge_labels: bool = True,
        notes: bool = True,
        highlighted_nodes: Sequence[mermaid.NodeIdent] | mermaid.NodeIdent | None = None,
        highlight_css: str = mermaid.DEFAULT_HIGHLIGHT_CSS,
        infer_name: bool = True,
        direction: mermaid.StateDiagramDirection | None = None,
    ) -> str:
        """The graph as a mermaid `stateDiagram-v2`.

        Args:
            start_node: nodes drawn with an edge from the start `[*]`.
            title: the title; the graph's name when None, none at all when False.
            edge_labels: show the labels of `Edge` annotations.
            notes: show node notes.
            highlighted_nodes: nodes to highlight.
            highlight_css: CSS of highlighted nodes.
            infer_name: infer the graph's name from the caller's variables when it has none.
            direction: direction of flow.
        """
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        if title is None and self.name:
            title = self.name
        return mermaid.generate_code(
            self,
            start_node=start_node,
            highlighted_nodes=highlighted_nodes,
            highlight_css=highlight_css,
            title=title or None,
            edge_labels=edge_labels,
            notes=notes,
            direction=direction,
        )

    def mermaid_image(
        self, infer_name: bool = True, **kwargs: typing_extensions.Unpack[mermaid.MermaidConfig]
    ) -> bytes:
        """The graph's diagram as an image rendered by the mermaid.ink service (needs httpx)."""
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        if 'title' not in kwargs and self.name:
            kwargs['title'] = self.name
        return mermaid.request_image(self, **kwargs)

    def mermaid_save(
        self, path: Path | str, /, *, infer_name: bool = True, **kwargs: typing_extensions.Unpack[mermaid.MermaidConfig]
    ) -> None:
        """Save the graph's diagram as an image rendered by the mermaid.ink service (needs httpx)."""
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        if 'title' not in kwargs and self.name:
            kwargs['title'] = self.name
        mermaid.save_image(path, self, **kwargs)

    def _node_base_args(self) -> list[tuple[Any, ...]]:
        """The type arguments of `BaseNode[...]` in each node's bases (searching the whole MRO)."""
        found: list[tuple[Any, ...]] = []
        for node_def in self.node_defs.values():
            for cls in node_def.node.__mro__:
                bases = typing_extensions.get_original_bases(cls) if '__orig_bases__' in cls.__dict__ else ()
                args = next(
                    (typing_extensions.get_args(b) for b in bases if typing_extensions.get_origin(b) is BaseNode), None
                )
                if args is not None:
                    found.append(args)
                    break
        return found

    def _declared_types(self) -> tuple[Any, Any]:
        """The state and output types as given, else as the first node naming them in its generic arguments says;
        `UNSET` where neither does."""
        state_type: Any = self._state_type
        run_end_type: Any = self._run_end_type
        for args in self._node_base_args():
            if not _utils.is_set(state_type) and args:
                state_type = args[0]
            if not _utils.is_set(run_end_type) and len(args) == 3 and not _is_never(args[2]):
                run_end_type = args[2]
        return state_type, run_end_type

    def _get_state_type(self) -> type[StateT]:
        state_type = self._declared_types()[0]
        return state_type if _utils.is_set(state_type) else type(None)  # pyright: ignore[reportReturnType]

    def _get_run_end_type(self) -> type[RunEndT]:
        run_end_type = self._declared_types()[1]
        if not _utils.is_set(run_end_type):
            raise exceptions.GraphSetupError('Could not infer run end type from nodes, please set `run_end_type`.')
        return run_end_type

    def _infer_name(self, frame: types.FrameType | None) -> None:
        """Name the graph after the variable that holds it in the caller of the function whose frame is `frame`."""
        caller = frame.f_back if frame is not None else None
        # `iter` runs inside contextlib's `__aenter__`: the user's frame is the one above it.
        while caller is not None and caller.f_code.co_filename == contextlib.__file__:
            caller = caller.f_back
        namespaces: list[dict[str, Any]] = []
        if caller is not None:
            namespaces += [caller.f_locals, caller.f_globals]
        # A coroutine run by the event loop (`asyncio.run(graph.run(...))`) has no user frame above it:
        # the graph is then most likely a global of the module that defines its nodes.
        for node_def in self.node_defs.values():
            module = sys.modules.get(node_def.node.__module__)
            if module is not None:
                namespaces.append(vars(module))
        for namespace in namespaces:
            for name, item in namespace.items():
                if item is self:
                    self.name = name
                    return


def _is_never(tp: object) -> bool:
    """Whether a node's third generic argument says it never ends the run."""
    return tp is typing_extensions.Never or tp is typing_extensions.NoReturn
