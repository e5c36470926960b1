"""Upstream's own test suites, run unchanged against tracegraph: by hand, from a pydantic-ai git checkout.

    python3 tests/upstream_suites/run.py PATH_TO_PYDANTIC_AI_CHECKOUT [--suite NAME ...]

Each suite runs twice in one venv built on the pins of its client's own `uv.lock` (exported with uv, installed with
pip): once on the real `pydantic_graph` the lock pins, once with every `pydantic_graph` module mapped to tracegraph's
(`tracegraph` for the classic era, `tracegraph.v1` for 0.0.54+) by a `sitecustomize` finder, before anything imports
it. No test file is edited, not even its imports. A suite fails when a test that passes on the real pydantic_graph
does not pass on tracegraph, or when fewer tests pass on tracegraph than the suite's floor (for the suites whose
pydantic_graph version is not the one the venv pins, so that have no baseline of their own). Tests that fail on the
real pydantic_graph too (they reach the network, a Temporal dev server, ...) are reported, not counted against.

The venvs and checkouts live under test-output/upstream/ and are reused. Needs the network to PyPI (or its mirror)
for the first run, and git for the checkout's tags.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import venv
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ('SUITES', 'Suite', 'main')

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / 'test-output' / 'upstream'

ALIAS = '''"""Maps pydantic_graph and each of its submodules to {tree} before anything imports it."""
import importlib
import importlib.abc
import importlib.util
import sys


class _Loader(importlib.abc.Loader):
    def __init__(self, target):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module):
        pass


class _Alias(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != 'pydantic_graph' and not fullname.startswith('pydantic_graph.'):
            return None
        real = '{tree}' + fullname[len('pydantic_graph'):]
        if importlib.util.find_spec(real) is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Loader(real), is_package=True)


sys.meta_path.insert(0, _Alias())
'''


@dataclass(frozen=True, kw_only=True)
class Suite:
    """One upstream suite: which tests, from which tag, in which client's venv, on which tracegraph tree."""

    name: str
    client: str
    """The pydantic-ai tag whose lock (and installed pydantic-ai-slim/pydantic-graph) the venv is built on."""
    tests_tag: str
    """The tag `paths` are taken from, in place of the client's own (the rest of `tests/` is the client's)."""
    paths: tuple[str, ...]
    tree: str
    extra_files: tuple[tuple[str, str], ...] = ()
    """(tag, path) of files the tests need from their own tag (a conftest's fixtures, a helper they import)."""
    floor: int = 0
    """Tests that must pass on tracegraph: all of a suite written for another pydantic_graph than the venv's (so
    with no baseline of its own), and for a client's suite what passed on the real pydantic_graph when measured
    (a collection error or a missing dependency then fails the check instead of shrinking both runs alike)."""
    pytest_args: tuple[str, ...] = field(default=())


BASENODE_1X = ('graph', 'persistence', 'file_persistence', 'state', 'mermaid', 'utils')
"""1.107's tests of the BaseNode runner (`tests/graph/beta` and the 2.0 deprecation tests are of other APIs)."""
SUITES = (
    Suite(
        name='pydantic_graph 0.0.37', client='v0.0.36', tests_tag='v0.0.37', paths=('tests/graph',), tree='tracegraph'
    ),
    Suite(
        name='pydantic_graph 0.0.40',
        client='v0.0.36',
        tests_tag='v0.0.40',
        paths=('tests/graph',),
        tree='tracegraph',
        extra_files=(('v0.0.40', 'tests/conftest.py'),),
        floor=58,
    ),
    Suite(
        name='pydantic_graph 1.107',
        client='v1.0.0',
        tests_tag='v1.107.5',
        paths=tuple(f'tests/graph/test_{name}.py' for name in BASENODE_1X),
        tree='tracegraph.v1',
        extra_files=(('v1.107.5', 'tests/_inline_snapshot.py'), ('v1.107.5', 'tests/graph/__init__.py')),
        floor=64,
    ),
    Suite(
        name='pydantic_ai 0.0.36',
        client='v0.0.36',
        tests_tag='v0.0.36',
        paths=('tests',),
        tree='tracegraph',
        floor=575,
    ),
    Suite(
        name='pydantic_ai 1.0',
        client='v1.0.0',
        tests_tag='v1.0.0',
        paths=('tests',),
        tree='tracegraph.v1',
        pytest_args=('-n', '2'),
        floor=1533,
    ),
)


def _git_files(repo: Path, tag: str, *paths: str) -> bytes:
    return subprocess.run(['git', '-C', repo, 'archive', tag, *paths], check=True, capture_output=True).stdout


def _checkout(repo: Path, suite: Suite) -> Path:
    """The client's tree at its tag (its tests read its docs and examples), with the suite's `paths` of `tests_tag`
    put in place of the client's."""
    home = WORK / f'src-{suite.name.replace(" ", "-")}'
    if home.exists():
        shutil.rmtree(home)
    overlays: list[tuple[str, tuple[str, ...]]] = [(suite.client, ()), (suite.tests_tag, suite.paths)]
    overlays += [(tag, (path,)) for tag, path in suite.extra_files]
    for tag, paths in overlays:
        for path in paths:
            target = home / path
            if target.is_dir():
                shutil.rmtree(target)
        with tarfile.open(fileobj=io.BytesIO(_git_files(repo, tag, *paths))) as tar:
            tar.extractall(home, filter='data')
    return home


def _client_python(repo: Path, tag: str) -> Path:
    """A venv on `tag`'s lock: pydantic-ai-slim (all extras) with its dev group, made once."""
    home = WORK / f'venv-{tag}'
    python = home / 'bin' / 'python'
    stamp = home / '.installed'
    if stamp.exists():
        return python
    tools = WORK / 'venv-uv'
    if not (tools / 'bin' / 'uv').exists():
        venv.create(tools, with_pip=True, clear=True)
        subprocess.run([tools / 'bin' / 'python', '-m', 'pip', 'install', '-q', 'uv'], check=True)
    lock_dir = WORK / f'lock-{tag}'
    lock_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(_git_files(repo, tag))) as tar:
        tar.extractall(lock_dir, filter='data')
    export = ('export', '--frozen', '--package', 'pydantic-ai-slim', '--all-extras', '--group', 'dev', '--no-hashes')
    exported = subprocess.run(
        [tools / 'bin' / 'uv', *export, '--no-emit-workspace', '--no-header'],
        cwd=lock_dir,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # Requirements pinned to a git commit (a coverage plugin) cannot come from an index; no test imports them.
    pins = [
        line for line in exported.splitlines() if line and not line.lstrip().startswith('#') and ' @ git+' not in line
    ]
    (lock_dir / 'requirements.txt').write_text('\n'.join(pins) + '\n')
    version = tag.removeprefix('v')
    venv.create(home, with_pip=True, clear=True)
    pip = [python, '-m', 'pip', 'install', '-q']
    subprocess.run([*pip, '-r', lock_dir / 'requirements.txt'], check=True)
    # The released packages (a tag's tree versions itself from git metadata, which an archive lacks); pydantic-evals
    # too where the tag has it, for its tests.
    packages = [f'pydantic-ai-slim=={version}', f'pydantic-graph=={version}']
    if (lock_dir / 'pydantic_evals').is_dir():
        packages.append(f'pydantic-evals=={version}')
    subprocess.run([*pip, '--no-deps', *packages], check=True)
    stamp.touch()
    return python


def _alias_dir(tree: str) -> Path:
    home = WORK / f'alias-{tree}'
    home.mkdir(parents=True, exist_ok=True)
    (home / 'sitecustomize.py').write_text(ALIAS.format(tree=tree))
    return home


def _outcomes(python: Path, cwd: Path, suite: Suite, tree: str | None) -> dict[str, str]:
    """Test id -> passed/failed/skipped, from pytest's JUnit XML, on the real pydantic_graph or on `tree`."""
    report = WORK / f'report-{suite.name.replace(" ", "-")}-{tree or "real"}.xml'
    env = {k: v for k, v in os.environ.items() if not k.startswith(('OTEL_', 'PYTHON', 'LOGFIRE_', 'VIRTUAL_ENV'))}
    if tree is not None:
        env['PYTHONPATH'] = f'{_alias_dir(tree)}:{ROOT}'
        where = subprocess.run(
            [python, '-c', 'import pydantic_graph; print(pydantic_graph.__name__)'],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert where.stdout.strip() == tree, where  # the alias won over the installed pydantic_graph
    command = [python, '-m', 'pytest', *suite.paths, '-q', '-p', 'no:cacheprovider', *suite.pytest_args]
    subprocess.run([*command, f'--junitxml={report}'], cwd=cwd, env=env, capture_output=True, check=False)
    outcomes: dict[str, str] = {}
    for case in ElementTree.parse(report).iter('testcase'):
        kinds = {child.tag for child in case}
        outcome = 'failed' if kinds & {'failure', 'error'} else 'skipped' if 'skipped' in kinds else 'passed'
        test_id = f'{case.get("classname")}::{case.get("name")}'
        if outcomes.get(test_id) != 'failed':  # a test failing in teardown reports twice
            outcomes[test_id] = outcome
    return outcomes


def run_suite(repo: Path, suite: Suite) -> dict[str, object]:
    """Both runs of `suite` and how they compare."""
    python = _client_python(repo, suite.client)
    cwd = _checkout(repo, suite)
    real = _outcomes(python, cwd, suite, None)
    ours = _outcomes(python, cwd, suite, suite.tree)
    lost = sorted(t for t, outcome in real.items() if outcome == 'passed' and ours.get(t) != 'passed')
    passed = sum(outcome == 'passed' for outcome in ours.values())
    return {
        'suite': suite.name,
        'on': suite.tree,
        'venv': suite.client,
        'tests': len(ours),
        'passed_real': sum(outcome == 'passed' for outcome in real.values()),
        'passed_tracegraph': passed,
        'failed_both': sorted(t for t, outcome in ours.items() if outcome == 'failed' and real.get(t) == 'failed'),
        'lost': lost,
        'ok': not lost and passed >= suite.floor,
    }


def main(argv: list[str]) -> int:
    """Run the chosen suites (all by default); print one JSON line per suite and a table; exit 1 on any loss."""
    parser = argparse.ArgumentParser(description=(__doc__ or '').splitlines()[0])
    parser.add_argument('repo', type=Path, help='a git checkout of pydantic/pydantic-ai, with its tags')
    parser.add_argument('--suite', action='append', choices=[s.name for s in SUITES], help='run only these')
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    results = [run_suite(args.repo, s) for s in SUITES if args.suite is None or s.name in args.suite]
    for result in results:
        print(json.dumps(result))
    print(f'\n{"suite":<24}{"on":<16}{"tests":>7}{"real":>7}{"ours":>7}  lost')
    for r in results:
        print(
            f'{r["suite"]:<24}{r["on"]:<16}{r["tests"]:>7}{r["passed_real"]:>7}{r["passed_tracegraph"]:>7}  {r["lost"] or "-"}'
        )
    return 0 if all(r['ok'] for r in results) else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
