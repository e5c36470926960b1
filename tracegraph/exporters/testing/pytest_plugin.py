"""pytest plugin (entry point `pytest11`): the `tracegraph_capture` fixture.

pytest loads this module in every run of every project that has tracegraph installed, so it imports
nothing beyond pytest at import time; the OpenTelemetry SDK is imported when a test asks for the fixture.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .capture import TelemetryCapture

__all__ = ('tracegraph_capture',)


@pytest.fixture
def tracegraph_capture() -> Generator[TelemetryCapture, None, None]:
    """Capture every span and metric tracegraph emits during the test, in memory.

    Yields:
        A `TelemetryCapture` with `.spans`, `.timelines()` and `.metrics()`.
    """
    try:
        from .capture import TelemetryCapture
    except ImportError as error:
        raise ImportError(
            f'the tracegraph_capture fixture needs the OpenTelemetry SDK ({error.name} is missing): '
            "pip install 'tracegraph[otlp]'"
        ) from error

    with TelemetryCapture.start() as capture:
        yield capture
