"""A throwaway PostgreSQL cluster for the tests: `initdb` into a temporary directory and `pg_ctl start` on a free
loopback port, as a user that is not root (PostgreSQL refuses to run as root), removed when the tests end.

The server's binaries are found through `pg_config --bindir`, `/usr/lib/postgresql/*/bin` or `PATH`. Without them
the PostgreSQL tests are skipped, unless `TRACEGRAPH_REQUIRE_POSTGRES=1` (set by CI, which installs them) makes that a
failure; so are they without psycopg (the `postgres` extra, absent from the lowest-versions run).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from ports import free_port

__all__ = ('PostgresServer', 'PostgresUnavailable', 'postgres_server', 'start_cluster')


class PostgresUnavailable(Exception):
    """No cluster can be started here: what is missing."""


@dataclass(frozen=True, kw_only=True)
class PostgresServer:
    """A running cluster: connect with `dsn`."""

    port: int
    dsn: str


def _bin_dir() -> Path | None:
    candidates: list[str] = []
    pg_config = shutil.which('pg_config')
    if pg_config:
        candidates.append(subprocess.run([pg_config, '--bindir'], capture_output=True, text=True).stdout.strip())
    candidates += sorted(glob.glob('/usr/lib/postgresql/*/bin'), reverse=True)
    initdb = shutil.which('initdb')
    if initdb:
        candidates.append(str(Path(initdb).resolve().parent))
    return next((Path(c) for c in candidates if c and (Path(c) / 'postgres').exists()), None)


def _unprivileged_user() -> str | None:
    """Who runs the server: this user unless it is root; else `postgres` (Debian's), else `nobody`."""
    if os.geteuid() != 0:
        return None
    for name in ('postgres', 'nobody'):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PostgresUnavailable('running as root with neither a `postgres` nor a `nobody` user to run PostgreSQL as')


@contextmanager
def postgres_server() -> Generator[PostgresServer]:
    """`start_cluster` for a test: skipped when psycopg (the `postgres` extra, absent from the lowest-versions run)
    or the server is missing; a missing server is a failure instead under `TRACEGRAPH_REQUIRE_POSTGRES=1`."""
    try:
        import psycopg  # noqa: F401  # pyright: ignore[reportUnusedImport]
    except ImportError:
        pytest.skip('psycopg is not installed (the `postgres` extra): the lowest-versions run has no extras')
    cluster = start_cluster()
    try:
        server = cluster.__enter__()
    except PostgresUnavailable as missing:
        if os.environ.get('TRACEGRAPH_REQUIRE_POSTGRES') == '1':
            pytest.fail(str(missing))
        pytest.skip(str(missing))
    try:
        yield server
    finally:
        cluster.__exit__(None, None, None)


@contextmanager
def start_cluster() -> Generator[PostgresServer]:
    """Start a cluster; stop and remove it on exit.

    Raises:
        PostgresUnavailable: the server's binaries are missing, or it failed to start.
    """
    bin_dir = _bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable('PostgreSQL server binaries not found (Debian: apt-get install postgresql)')
    user = _unprivileged_user()
    home = Path(tempfile.mkdtemp(prefix='tracegraph-pg-'))  # not under pytest's root-only tmp directory
    data, sockets = home / 'data', home / 'sockets'
    sockets.mkdir()
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (home, sockets):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    port = free_port()

    def run(*command: str | Path) -> None:
        proc = subprocess.run([str(c) for c in command], capture_output=True, text=True, user=user, cwd=home)
        if proc.returncode != 0:
            log = (home / 'log').read_text() if (home / 'log').exists() else ''
            raise PostgresUnavailable(f'{command[0]} failed ({proc.returncode}): {proc.stderr}{proc.stdout}{log}')

    try:
        run(bin_dir / 'initdb', '-D', data, '-U', 'tracegraph', '--auth=trust', '--no-sync', '-E', 'UTF8')
        options = f'-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200'
        run(bin_dir / 'pg_ctl', '-D', data, '-l', home / 'log', '-o', options, '-w', '-t', '60', 'start')
        yield PostgresServer(port=port, dsn=f'postgresql://tracegraph@127.0.0.1:{port}/postgres')
    finally:
        if (data / 'postmaster.pid').exists():
            subprocess.run(
                [str(bin_dir / 'pg_ctl'), '-D', str(data), '-m', 'immediate', '-w', 'stop'],
                capture_output=True,
                user=user,
                cwd=home,
            )
        shutil.rmtree(home, ignore_errors=True)
