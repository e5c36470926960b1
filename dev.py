"""The project's two commands, with nothing but Python and pip: `python3 dev.py demo` and `python3 dev.py test`.

Each creates `.venv` (and installs the project into it, editable, with its dev extras) when it is missing or
older than `pyproject.toml`, then runs:

    python3 dev.py demo [ARGS]    # `tracegraph demo ARGS`: example graphs, the embedded dashboard, timelines
    python3 dev.py test [ARGS]    # ruff check, ruff format --check, pyright (strict), pytest ARGS — what CI runs
    python3 dev.py test --quick [ARGS]   # ruff and `QUICK_SUITE` without the slow tests: under a minute
    python3 dev.py test --lowest [ARGS]  # the core's tests in `.venv-lowest`: the core alone on its floors
                                  # (.ci/constraints-lowest.txt), no extras — CI's second run
    python3 dev.py bench          # bench/step_overhead.py (minutes; by hand, never in CI)
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

__all__ = ('main',)

ROOT = Path(__file__).resolve().parent
LOWEST = ROOT / '.ci' / 'constraints-lowest.txt'
LOWEST_TOOLS = ROOT / '.ci' / 'requirements-lowest.txt'
LOWEST_SUITE = (
    'tests/test_core_*.py', 'tests/test_tracing_*.py', 'tests/test_persistence*.py', 'tests/test_exporters_drops.py'
)  # fmt: skip
LOWEST_NEEDS_EXTRAS = {
    'test_core_install.py',
    'test_persistence.py',
    'test_tracing_secrets.py',
}
"""The core's tests (what the lowest run, core floors and no extras, runs), but those that read through an extra."""
QUICK_SUITE = (
    'tests/test_core_graph.py', 'tests/test_core_history.py', 'tests/test_core_classic_names.py',
    'tests/test_core_v1.py', 'tests/test_core_mermaid.py', 'tests/test_tracing_*.py', 'tests/test_persistence.py',
    'tests/test_persistence_durable.py', 'tests/test_layering.py', 'tests/test_exporters_console.py',
    'tests/test_exporters_capture.py', 'tests/test_presentation_and_tables.py',
)  # fmt: skip
"""`test --quick`: the engine, tracing, persistence and layering tests, in well under a minute, for the edit loop."""


def _run(*command: str | Path) -> int:
    print('+', ' '.join(str(c) for c in command), flush=True)
    return subprocess.call([str(c) for c in command], cwd=ROOT)


def ensure_venv(*, lowest: bool = False) -> Path:
    """Create `.venv` (or `.venv-lowest`, on the lowest allowed versions) and install the project into it, unless that
    was done since `pyproject.toml` (and the constraints) last changed; its `bin` directory."""
    home = ROOT / ('.venv-lowest' if lowest else '.venv')
    bin_dir = home / ('Scripts' if os.name == 'nt' else 'bin')
    stamp = home / '.installed'
    sources = [ROOT / 'pyproject.toml', *([LOWEST, LOWEST_TOOLS] if lowest else [])]
    newest = max(p.stat().st_mtime for p in sources)
    if stamp.exists() and stamp.stat().st_mtime >= newest and (bin_dir / 'python').exists():
        return bin_dir
    if not (bin_dir / 'python').exists():
        print(f'+ creating {home}', flush=True)
        venv.create(home, with_pip=True)
    # The lowest run installs the core alone (no extras) beside its test tools, at the core's floors.
    install = ('-c', str(LOWEST), '-r', str(LOWEST_TOOLS), '-e', '.') if lowest else ('-e', '.[dev]')
    for command in (
        (bin_dir / 'python', '-m', 'pip', 'install', '-q', '--upgrade', 'pip'),
        (bin_dir / 'python', '-m', 'pip', 'install', '-q', *install),
    ):
        if code := _run(*command):
            sys.exit(code)
    stamp.touch()
    return bin_dir


def main(argv: list[str]) -> int:
    """Run `demo`, `test` or `bench` with the remaining arguments; returns the exit code."""
    if not argv or argv[0] not in {'demo', 'test', 'bench'}:
        print(__doc__, file=sys.stderr)
        return 2
    task, args = argv[0], argv[1:]
    lowest = task == 'test' and args[:1] == ['--lowest']
    quick = task == 'test' and args[:1] == ['--quick']
    if lowest or quick:
        args = args[1:]
    bin_dir = ensure_venv(lowest=lowest)
    if task == 'demo':
        return _run(bin_dir / 'tracegraph', 'demo', *args)
    if task == 'bench':
        return _run(bin_dir / 'python', 'bench/step_overhead.py', *args)
    # pytest exits 5 when it collected nothing: passed on as the failure it is.
    suite: list[str] = []
    if lowest and not any(a.startswith('tests') for a in args):
        found = (p for pattern in LOWEST_SUITE for p in sorted(ROOT.glob(pattern)))
        suite = [str(p) for p in found if p.name not in LOWEST_NEEDS_EXTRAS]
    if quick:
        suite = ['-m', 'not slow', *(str(p) for pattern in QUICK_SUITE for p in sorted(ROOT.glob(pattern)))]
    pytest = (bin_dir / 'python', '-m', 'pytest', *suite, *args)
    # The lowest run checks the floors at run time; the code checks need the newest run's tools only.
    checks = [(bin_dir / 'ruff', 'check', '.'), (bin_dir / 'ruff', 'format', '--check', '.'), (bin_dir / 'pyright',)]
    if quick:
        checks = checks[:2]  # pyright (strict) takes half a minute on its own: the whole run has it
    for step in (*([] if lowest else checks), pytest):
        if code := _run(*step):
            return code
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
