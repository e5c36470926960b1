"""Every ```python block of the README, docs/*.md and dashboards/README.md runs, each in a fresh interpreter in an
empty directory, and prints what its `#>` lines say (`...` in a line stands for any text: durations, ids)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ['README.md', *sorted(str(p.relative_to(ROOT)) for p in (ROOT / 'docs').glob('*.md')), 'dashboards/README.md']


def _blocks() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for page in PAGES:
        text = (ROOT / page).read_text()
        for match in re.finditer(r'^```python\n(.*?)^```', text, re.S | re.M):
            line = text[: match.start()].count('\n') + 1
            found.append((f'{page}:{line}', match[1]))
    return found


@pytest.mark.parametrize(('where', 'source'), _blocks(), ids=[w for w, _ in _blocks()])
def test_doc_block_runs_and_prints_what_it_says(
    where: str, source: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    code = textwrap.dedent(source)
    expected = ''.join(line.strip()[3:] + '\n' for line in code.splitlines() if line.strip().startswith('#>'))
    env = {k: v for k, v in os.environ.items() if not k.startswith('OTEL_')}
    env['PYTHONPATH'] = str(ROOT)
    if 'DATABASE_URL' in code:  # a PostgreSQL example: the session's throwaway cluster
        env['DATABASE_URL'] = request.getfixturevalue('postgres').dsn
    proc = subprocess.run(
        [sys.executable, '-W', 'error', '-c', code], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, f'{where}\n{proc.stderr}'
    assert proc.stderr == '', where
    if expected:
        assert _matches(proc.stdout, expected), f'{where}\n--- printed\n{proc.stdout}--- expected\n{expected}'


def _matches(printed: str, expected: str) -> bool:
    if '...' not in expected:
        return printed == expected
    pattern = '.*'.join(re.escape(part) for part in expected.split('...'))
    return re.fullmatch(pattern, printed) is not None


def test_blocks_were_found() -> None:
    assert len(_blocks()) >= 11


def test_the_readmes_first_example_passes_pyright_strict(tmp_path: Path) -> None:
    """What a new user copies first type-checks under `pyright --strict` as it stands."""
    where, source = _blocks()[0]
    assert where.startswith('README.md:')
    example = tmp_path / 'first_example.py'
    example.write_text('# pyright: strict\n' + textwrap.dedent(source))
    pyright = Path(sys.executable).with_name('pyright')
    proc = subprocess.run(
        [str(pyright), '--pythonpath', sys.executable, str(example)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout
