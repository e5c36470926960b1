from __future__ import annotations

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
