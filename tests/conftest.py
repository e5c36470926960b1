from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from browser_helpers import ARGS, CHROMIUM
from postgres_helpers import PostgresServer, postgres_server
from tracing_helpers import Pipeline, make_pipeline

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope='module')
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium, one per test module (`browser_helpers.require_chromium` skips without it)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, timeout=30_000)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh 1280x900 page in its own browser context."""
    context = browser.new_context(viewport={'width': 1280, 'height': 900})
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    try:
        yield opened
    finally:
        context.close()


@pytest.fixture
def anyio_backend() -> str:
    return 'asyncio'


@pytest.fixture
def otel() -> Iterator[Pipeline]:
    """A real SDK pipeline (in-memory span exporter and metric reader), shut down after the test."""
    pipeline = make_pipeline()
    yield pipeline
    pipeline.tracer_provider.shutdown()
    pipeline.meter_provider.shutdown()


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own data directory: nothing reads or writes the user's dashboard store or its files."""
    monkeypatch.setenv('XDG_DATA_HOME', str(tmp_path_factory.mktemp('xdg-data')))


@pytest.fixture(scope='session')
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster on a free loopback port, shared by the session's tests (each uses its own run
    ids); skipped when the server is not installed, unless CI requires it (`postgres_helpers`)."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """Mount a tmpfs of the given size in KiB for the test (root only, as CI runs) and return its directory; a real
    full filesystem, and (remounted read-only) a real unwritable one."""
    if os.geteuid() != 0 or shutil.which('mount') is None:
        pytest.skip('mounting a tmpfs needs root')
    mounts: list[Path] = []

    def mount(size_kib: int) -> Path:
        where = tmp_path / f'fs{len(mounts)}'
        where.mkdir()
        proc = subprocess.run(
            ['mount', '-t', 'tmpfs', '-o', f'size={size_kib}k', 'tmpfs', str(where)], capture_output=True
        )
        if proc.returncode != 0:
            pytest.skip(f'cannot mount a tmpfs here: {proc.stderr.decode().strip()}')
        mounts.append(where)
        return where

    yield mount
    for where in mounts:
        subprocess.run(['umount', '-l', str(where)], check=False)


def _current_loop() -> asyncio.AbstractEventLoop | None:
    policy = asyncio.get_event_loop_policy()  # pyright: ignore[reportDeprecated]  # no other way to peek without creating
    local = getattr(policy, '_local', None)  # the thread's current loop, read without making one
    return getattr(local, '_loop', None)


def _close_new_loop(before: asyncio.AbstractEventLoop | None) -> None:
    """Close the thread's current loop when it is not `before` and idle, and put `before` back."""
    after = _current_loop()
    if after is not None and after is not before and not after.is_running() and not after.is_closed():
        after.close()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            asyncio.set_event_loop(before)


@pytest.fixture(autouse=True, scope='module')
def _close_loops_left_by_module_fixtures() -> Iterator[None]:
    """The same for a module's fixtures (set up before any test's own fixtures): a loop `run_sync` made in one is
    closed when the module ends."""
    before = _current_loop()
    yield
    _close_new_loop(before)


@pytest.fixture(autouse=True)
def _close_loops_left_by_run_sync(request: pytest.FixtureRequest) -> Iterator[None]:
    """`run_sync` keeps the thread's loop open between calls, as the classic engine does; a sync test that made one
    closes it, so the suite's `filterwarnings = error` does not turn its garbage collection into another test's error.
    """
    if inspect.iscoroutinefunction(getattr(request, 'function', None)):
        yield
        return
    before = _current_loop()
    yield
    _close_new_loop(before)
