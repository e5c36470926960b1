"""The project's two commands, with nothing but Python and pip: `python3 dev.py demo` and `python3 dev.py test`.

Each creates `.venv` (and installs the project into it, editable, with its dev extras) when it is missing or
older than `pyproject.toml`, then runs:

    python3 dev.py demo [ARGS]    # `tracegraph demo ARGS`: example graphs, the embedded dashboard, timelines
    python3 dev.py test [ARGS]    # ruff check, ruff format --check, pyright (strict), pytest ARGS — what CI runs
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
VENV = ROOT / '.venv'
BIN = VENV / ('Scripts' if os.name == 'nt' else 'bin')
STAMP = VENV / '.installed'


def _run(*command: str | Path) -> int:
    print('+', ' '.join(str(c) for c in command), flush=True)
    return subprocess.call([str(c) for c in command], cwd=ROOT)


def ensure_venv() -> None:
    """Create `.venv` and install the project into it, unless that was done since `pyproject.toml` last changed."""
    pyproject = ROOT / 'pyproject.toml'
    if STAMP.exists() and STAMP.stat().st_mtime >= pyproject.stat().st_mtime and (BIN / 'python').exists():
        return
    if not (BIN / 'python').exists():
        print(f'+ creating {VENV}', flush=True)
        venv.create(VENV, with_pip=True)
    for command in (
        (BIN / 'python', '-m', 'pip', 'install', '-q', '--upgrade', 'pip'),
        (BIN / 'python', '-m', 'pip', 'install', '-q', '-e', '.[dev]'),
    ):
        if code := _run(*command):
            sys.exit(code)
    STAMP.touch()


def main(argv: list[str]) -> int:
    """Run `demo`, `test` or `bench` with the remaining arguments; returns the exit code."""
    if not argv or argv[0] not in {'demo', 'test', 'bench'}:
        print(__doc__, file=sys.stderr)
        return 2
    task, args = argv[0], argv[1:]
    ensure_venv()
    if task == 'demo':
        return _run(BIN / 'tracegraph', 'demo', *args)
    if task == 'bench':
        return _run(BIN / 'python', 'bench/step_overhead.py', *args)
    for step in (
        (BIN / 'ruff', 'check', '.'),
        (BIN / 'ruff', 'format', '--check', '.'),
        (BIN / 'pyright',),
        # pytest exits 5 when it collected nothing: passed on as the failure it is.
        (BIN / 'python', '-m', 'pytest', *args),
    ):
        if code := _run(*step):
            return code
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
