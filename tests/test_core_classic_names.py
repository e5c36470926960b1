"""Every name a client can import from the classic pydantic_graph modules is importable from tracegraph's.

The lists were read off pydantic_graph 0.0.37 (its modules' own names, public and the private helpers of `_utils`
that libraries such as pydantic_ai import).
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import threading
import warnings
from dataclasses import dataclass

import pytest
from inline_snapshot import snapshot

from tracegraph import BaseNode, End, GraphRunContext, GraphSetupError, _utils
from tracegraph.nodes import Edge, NodeDef

CLASSIC_NAMES = {
    '': [
        'BaseNode', 'Edge', 'End', 'EndStep', 'Graph', 'GraphRun', 'GraphRunContext', 'GraphRunResult',
        'GraphRuntimeError', 'GraphSetupError', 'HistoryStep', 'NodeStep',
    ],
    '._utils': [
        'T', 'UNSET', 'Unset', 'comma_and', 'get_event_loop', 'get_parent_namespace', 'get_union_args', 'is_set',
        'now_utc', 'unpack_annotated',
    ],
    '.nodes': ['BaseNode', 'DepsT', 'Edge', 'End', 'GraphRunContext', 'NodeDef', 'NodeRunEndT', 'RunEndT', 'StateT'],
    '.state': ['CustomNodeSchema', 'EndStep', 'HistoryStep', 'NodeStep', 'StateT', 'deep_copy_state', 'nodes_schema_var'],
    '.graph': ['Graph', 'GraphRun', 'GraphRunResult', 'T', 'nodes_schema_var'],
    '.mermaid': [
        'DEFAULT_HIGHLIGHT_CSS', 'MermaidConfig', 'NodeIdent', 'StateDiagramDirection', '_node_ids', 'generate_code',
        'request_image', 'save_image',
    ],
    '.exceptions': ['GraphRuntimeError', 'GraphSetupError'],
}  # fmt: skip


PERSISTENCE_ERA_NAMES = {
    '': ['FullStatePersistence', 'SimpleStatePersistence', 'NodeSnapshot', 'EndSnapshot', 'Snapshot'],
    '.basenode': [
        'BaseNode', 'DepsT', 'Edge', 'End', 'GraphRunContext', 'NodeDef', 'NodeRunEndT', 'RunEndT', 'StateT',
        'generate_snapshot_id',
    ],
    '.nodes': ['generate_snapshot_id'],
    '.persistence': [
        'BaseStatePersistence', 'EndSnapshot', 'NodeSnapshot', 'RunEndT', 'Snapshot', 'SnapshotStatus', 'StateT',
        'UNSET_SNAPSHOT_ID', 'build_snapshot_list_type_adapter',
    ],
    '.persistence.in_mem': ['FullStatePersistence', 'SimpleStatePersistence'],
    '.persistence.file': ['FileStatePersistence'],
    '.persistence._utils': ['CustomNodeSchema', 'nodes_type_context', 'now_utc', 'set_nodes_type_context'],
    '._utils': ['AbstractSpan', 'get_traceparent', 'infer_obj_name', 'run_in_executor'],
    '.exceptions': [
        'GraphBuildingError', 'GraphNodeStatusError', 'GraphRuntimeError', 'GraphSetupError', 'GraphValidationError',
    ],
}  # fmt: skip
"""Read off pydantic_graph 1.107.10's modules (the BaseNode runner and its persistence)."""


@pytest.mark.parametrize(
    ('module', 'names'),
    [*CLASSIC_NAMES.items(), *PERSISTENCE_ERA_NAMES.items()],
    ids=[f'0.0.37:tracegraph{m}' for m in CLASSIC_NAMES] + [f'1.107:tracegraph{m}' for m in PERSISTENCE_ERA_NAMES],
)
def test_classic_module_names_are_importable(module: str, names: list[str]) -> None:
    mod = importlib.import_module(f'tracegraph{module}')
    missing = [name for name in names if not hasattr(mod, name)]
    assert missing == []


@pytest.mark.anyio
async def test_1x_utils_helpers() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    def add(a: int, b: int = 0) -> int:
        return a + b

    assert await _utils.run_in_executor(add, 2, b=3) == 5
    with TracerProvider().get_tracer('t').start_as_current_span('s') as span:
        ctx = span.get_span_context()
        assert _utils.get_traceparent(span) == f'00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}'
    assert _utils.get_traceparent(object()) is None

    def caller() -> str | None:
        named_thing = object()
        return inner(named_thing)

    def inner(obj: object) -> str | None:
        return _utils.infer_obj_name(obj, depth=2)

    assert caller() == 'named_thing'


def test_public_modules_export_what_the_classic_ones_export() -> None:
    import tracegraph
    import tracegraph.state

    assert set(CLASSIC_NAMES['']) <= set(tracegraph.__all__)
    assert set(CLASSIC_NAMES['.state']) - {'StateT'} <= set(tracegraph.state.__all__)


def test_get_event_loop_in_a_thread_makes_and_keeps_one() -> None:
    seen: list[object] = []

    def worker() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter('error')  # no deprecation warning on any Python
            loop = _utils.get_event_loop()
            seen.extend([loop, _utils.get_event_loop(), asyncio.get_event_loop()])
            loop.close()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(30)
    assert len(seen) == 3 and seen[0] is seen[1] is seen[2]


@pytest.mark.anyio
async def test_get_event_loop_is_the_running_loop() -> None:
    assert _utils.get_event_loop() is asyncio.get_running_loop()


def test_get_event_loop_replaces_a_closed_loop() -> None:
    code = (
        'import asyncio, warnings\n'
        'warnings.simplefilter("error")\n'
        'from tracegraph._utils import get_event_loop\n'
        'first = get_event_loop(); first.close()\n'
        'second = get_event_loop()\n'
        'print(first is not second, not second.is_closed(), second.run_until_complete(asyncio.sleep(0, "ok")))\n'
        'second.close()\n'
    )
    proc = subprocess.run([sys.executable, '-W', 'error', '-c', code], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, 'True True ok\n', '')


def test_classic_utils_behave_as_the_classic_ones() -> None:
    from typing import Annotated, Union

    assert _utils.comma_and(['a']) == 'a'
    assert _utils.comma_and(['a', 'b', 'c']) == 'a, b, and c'
    assert _utils.get_union_args(Union[int, str]) == (int, str)
    assert _utils.get_union_args(int) == (int,)
    assert _utils.unpack_annotated(Annotated[int, 'x']) == (int, ['x'])
    assert _utils.is_set(1) and not _utils.is_set(_utils.UNSET)
    assert _utils.now_utc().tzinfo is not None


def test_node_def_takes_positional_arguments_as_the_classic_one() -> None:
    @dataclass
    class Leaf(BaseNode[None, None, int]):
        async def run(self, ctx: GraphRunContext) -> End[int]:
            return End(1)

    made = NodeDef(Leaf, 'Leaf', None, {}, Edge(None), False)
    assert made == Leaf.get_node_def(None)


def test_unresolvable_return_hint_is_also_the_classic_name_error() -> None:
    @dataclass
    class Lost(BaseNode[None, None, None]):
        async def run(self, ctx: GraphRunContext) -> Nowhere:  # noqa: F821  # pyright: ignore[reportUndefinedVariable, reportUnknownParameterType]
            raise NotImplementedError

    from tracegraph import Graph

    with pytest.raises(NameError) as exc_info:
        Graph(nodes=[Lost])
    assert isinstance(exc_info.value, GraphSetupError)
    assert str(exc_info.value) == snapshot(
        "Cannot resolve the return annotation of `test_unresolvable_return_hint_is_also_the_classic_name_error.<locals>.Lost.run`: name 'Nowhere' is not defined"
    )
