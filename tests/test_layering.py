"""The layering of docs/architecture.md, read off the imports of every module (so a reviewer's picture stays true).

Every module of the package belongs to one unit, and a unit imports only the units `MAY_IMPORT` lists for it. The
engine calls the tracing layer; tracing never imports the engine; exporters never import the dashboard; the engine
and tracing never import the SDK. Imports under `if TYPE_CHECKING:` are left out: they are types for the checker,
never run, and the only place two units may name each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / 'tracegraph'

ENGINE = {
    'nodes', 'basenode', 'graph', 'run', 'run_result', 'run_scope', 'history', 'mermaid', 'exceptions', '_utils', 'state',
    'persistence',
}  # fmt: skip
CLI = {'cli', 'cli_commands', '__main__', 'demo'}
EXPORTERS_BASE = {'settings', 'drops', 'providers'}
"""The exporters' shared modules at the package root: settings, the count of lost spans, where processors go."""
EXPORTER_PARTS = {'otlp', 'spool', 'process', 'local', 'testing', 'metrics'}

MAY_IMPORT: dict[str, set[str]] = {
    'version': set(),
    'merge_binders': set(),
    'presentation': set(),
    'tracing': {'presentation', 'merge_binders', 'version'},
    'engine': {'tracing', 'presentation', 'version'},
    'v1': {'engine'},
    'facade': {'engine', 'version'},
    'exporters.base': {'tracing'},
    'exporters.otlp': {'exporters.base', 'tracing'},
    'exporters.local': {'exporters.base', 'exporters.otlp', 'presentation', 'tracing'},
    'exporters.spool': {'exporters.base', 'exporters.otlp', 'exporters.local', 'tracing'},
    'exporters.process': {'exporters.base', 'exporters.otlp', 'tracing'},
    'exporters.metrics': {'exporters.base', 'tracing'},
    'exporters.testing': {'exporters.base', 'exporters.metrics', 'presentation', 'tracing'},
    'exporters.setup': {'exporters.base', *(f'exporters.{p}' for p in EXPORTER_PARTS), 'tracing', 'version'},
    'dashboard.auth': set(),
    'dashboard.store': {'tracing', 'presentation'},
    'dashboard.ingest': {'dashboard.store', 'dashboard.auth', 'exporters.otlp', 'tracing'},
    'dashboard.web': {'dashboard.store', 'presentation', 'tracing'},
    'dashboard.server': {
        'dashboard.web',
        'dashboard.ingest',
        'dashboard.store',
        'dashboard.auth',
        'exporters.base',
        'tracing',
        'version',
    },
    'dashboard.report': {'dashboard.store', 'dashboard.ingest', 'exporters.local', 'presentation', 'tracing'},
    'dashboard.facade': {'dashboard.store'},
}
MAY_IMPORT['cli'] = set(MAY_IMPORT)  # the command line may use every unit


def unit(parts: tuple[str, ...]) -> str:
    """The unit of the module at `parts` (its path under `tracegraph/`, without `.py`).

    Raises:
        KeyError: the module belongs to no unit: give it one here and in docs/architecture.md.
    """
    top = parts[0]
    if top in ENGINE:
        return 'engine'
    if top in CLI:
        return 'cli'
    simple = {'__init__': 'facade', '_version': 'version', '_merge_binders': 'merge_binders'}
    if top in simple:
        return simple[top]
    if top in ('tracing', 'presentation', 'v1'):
        return top
    if top == 'exporters' and len(parts) == 2:
        return 'exporters.base' if parts[1] in EXPORTERS_BASE else 'exporters.setup'
    if top == 'exporters' and parts[1] in EXPORTER_PARTS:
        return f'exporters.{parts[1]}'
    if top == 'dashboard' and len(parts) == 2:
        return {'__init__': 'dashboard.facade', 'auth': 'dashboard.auth', 'report': 'dashboard.report'}[parts[1]]
    if top == 'dashboard' and parts[1] in ('store', 'ingest', 'web', 'server'):
        return f'dashboard.{parts[1]}'
    raise KeyError(f'tracegraph/{"/".join(parts)}.py belongs to no unit of the layering')


def _target(name: str) -> str | None:
    """The unit of the tracegraph module (or package) `name` names, None for the package itself."""
    parts = name.split('.')[1:]
    for k in range(len(parts), 0, -1):
        path = PACKAGE.joinpath(*parts[:k])
        if path.with_suffix('.py').exists():
            return unit(tuple(parts[:k]))
        if path.is_dir():
            return unit((*parts[:k], '__init__'))
    return None


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and 'TYPE_CHECKING' in ast.unparse(node.test):
            skipped |= {id(sub) for body in node.body for sub in ast.walk(body)}
    return skipped


def imports(module: Path) -> list[tuple[str, int]]:
    """Absolute names of what `module` imports at run time, with line numbers (relative imports resolved)."""
    return imports_of(module.read_text(), ['tracegraph', *module.relative_to(PACKAGE).with_suffix('').parts[:-1]])


def imports_of(source: str, package: list[str]) -> list[tuple[str, int]]:
    """What `source`, a module of `package` (its dotted parts), imports at run time."""
    tree = ast.parse(source)
    skipped = _type_checking_nodes(tree)
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if not node.level:
                found.append((node.module or '', node.lineno))
                continue
            base = '.'.join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            if node.module:
                found.append((base, node.lineno))
            else:
                found += [(f'{base}.{alias.name}', node.lineno) for alias in node.names]
    return found


MODULES = sorted(PACKAGE.rglob('*.py'))


@pytest.mark.parametrize('module', MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_follow_the_layering(module: Path) -> None:
    own = unit(module.relative_to(PACKAGE).with_suffix('').parts)
    bad: list[str] = []
    where = module.relative_to(PACKAGE)
    for name, line in imports(module):
        if name.startswith('tracegraph.'):
            target = _target(name)
            if target is not None and target != own and target not in MAY_IMPORT[own]:
                bad.append(f'{where}:{line} ({own}) imports {name} ({target})')
        if own in ('engine', 'tracing', 'presentation') and name.startswith('opentelemetry.sdk'):
            bad.append(f'{where}:{line} imports the SDK ({name})')
    assert bad == []


def test_every_module_is_in_a_unit_and_the_units_do_not_circle() -> None:
    units = {unit(p.relative_to(PACKAGE).with_suffix('').parts) for p in MODULES}
    assert units == set(MAY_IMPORT)
    order: list[str] = []
    while len(order) < len(MAY_IMPORT):  # a topological order exists exactly when no units circle
        ready = [u for u in MAY_IMPORT if u not in order and MAY_IMPORT[u] <= set(order)]
        assert ready, f'these units import each other: {sorted(set(MAY_IMPORT) - set(order))}'
        order += sorted(ready)


def test_the_reading_of_imports_finds_run_time_imports_and_leaves_out_type_checking_ones() -> None:
    source = (
        'from __future__ import annotations\n'
        'from typing import TYPE_CHECKING\n'
        'from ..graph import Graph\n'
        'from . import attributes\n'
        'if TYPE_CHECKING:\n'
        '    from ..run import GraphRun\n'
    )
    found = [name for name, _ in imports_of(source, ['tracegraph', 'tracing'])]
    assert found == ['__future__', 'typing', 'tracegraph.graph', 'tracegraph.tracing.attributes']
    assert _target('tracegraph.graph') == 'engine' and 'engine' not in MAY_IMPORT['tracing']
    assert _target('tracegraph.dashboard.store.database') == 'dashboard.store'
    assert _target('tracegraph.exporters') == 'exporters.setup'


def test_the_tree_in_the_architecture_doc_names_every_module() -> None:
    doc = (PACKAGE.parent / 'docs' / 'architecture.md').read_text()
    tree = doc.split('## The tree', 1)[1].split('```text\n', 1)[1].split('```', 1)[0]
    listed: set[str] = set()
    folders: list[str] = []
    for line in tree.splitlines()[1:]:
        depth = (len(line) - len(line.lstrip())) // 2
        name = line.split()[0]
        folders[depth - 1 :] = [name.rstrip('/')] if name.endswith('/') else []
        if name.endswith('.py'):
            listed.add('/'.join([*folders[: depth - 1], name]))
    assert listed == {str(p.relative_to(PACKAGE)) for p in MODULES}
