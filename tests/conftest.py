from __future__ import annotations

import asyncio
import inspect
import warnings
from collections.abc import Iterator

import pytest
from tracing_helpers import Pipeline, make_pipeline


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


def _current_loop() -> asyncio.AbstractEventLoop | None:
    policy = asyncio.get_event_loop_policy()  # pyright: ignore[reportDeprecated]  # no other way to peek without creating
    local = getattr(policy, '_local', None)  # the thread's current loop, read without making one
    return getattr(local, '_loop', None)


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
    after = _current_loop()
    if after is not None and after is not before and not after.is_running() and not after.is_closed():
        after.close()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            asyncio.set_event_loop(before)
