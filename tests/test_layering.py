"""The layering of docs/architecture.md, read off the imports of every module (so a reviewer's picture stays true).

The engine calls the tracing layer; tracing never imports the engine; exporters never import the dashboard; the
engine never imports the SDK, an exporter or the dashboard.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / 'tracegraph'

ENGINE = {
    'nodes', 'basenode', 'graph', 'run', 'run_scope', 'history', 'mermaid', 'exceptions', '_utils', 'state', 'persistence',
}  # fmt: skip
FORBIDDEN: dict[str, set[str]] = {
    # layer: the tracegraph top-level names (subpackages or engine modules) it must not import
    'tracing': ENGINE | {'v1', 'exporters', 'dashboard', 'cli', 'demo'},
    'engine': {'v1', 'exporters', 'dashboard', 'cli', 'demo'},
    'v1': {'exporters', 'dashboard', 'cli', 'demo'},  # the 1.x module tree: the engine's classes only
    'exporters': ENGINE | {'v1', 'dashboard', 'cli', 'demo'},
    'dashboard': ENGINE | {'v1', 'cli', 'demo'},
}


def _layer(module: Path) -> str | None:
    part = module.relative_to(PACKAGE).parts[0].removesuffix('.py')
    if part in ENGINE:
        return 'engine'
    return part if part in FORBIDDEN else None


def _imports(module: Path) -> list[tuple[str, int]]:
    """Absolute names of what `module` imports, with line numbers (relative imports resolved)."""
    package = ['tracegraph', *module.relative_to(PACKAGE).with_suffix('').parts[:-1]]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(module.read_text(), str(module))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = '.'.join(base + ([node.module] if node.module else []))
                if not node.module:
                    found += [(f'{name}.{alias.name}', node.lineno) for alias in node.names]
                    continue
            else:
                name = node.module or ''
            found.append((name, node.lineno))
    return found


MODULES = sorted(p for p in PACKAGE.rglob('*.py') if _layer(p) is not None)


@pytest.mark.parametrize('module', MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_follow_the_layering(module: Path) -> None:
    layer = _layer(module)
    assert layer is not None
    bad: list[str] = []
    for name, line in _imports(module):
        parts = name.split('.')
        if parts[0] == 'tracegraph' and len(parts) > 1 and parts[1] in FORBIDDEN[layer]:
            bad.append(f'{module.relative_to(PACKAGE)}:{line} imports {name}')
        if layer in ('engine', 'tracing') and name.startswith('opentelemetry.sdk'):
            bad.append(f'{module.relative_to(PACKAGE)}:{line} imports the SDK ({name})')
    assert bad == []


def test_the_layers_were_found() -> None:
    layers = {_layer(p) for p in MODULES}
    assert layers == {'tracing', 'engine', 'v1', 'exporters', 'dashboard'}
    assert len(MODULES) > 30
