"""How a run and a node step ended: decided here once, for the spans, the metrics and the timeline alike."""

from __future__ import annotations

import asyncio

from .attributes import Outcome

__all__ = ('is_interruption', 'step_outcome', 'run_outcome', 'error_type')


def is_interruption(error: BaseException) -> bool:
    """Whether `error` stops a run from outside (cancellation, Ctrl-C, a closed generator), not a failure of it."""
    return isinstance(error, (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt))


def step_outcome(error: BaseException) -> Outcome:
    """The outcome of a node step that raised `error`: `interrupted` for an interruption, otherwise `failed`."""
    return 'interrupted' if is_interruption(error) else 'failed'


def run_outcome(ended: bool, error: BaseException | None, failure: BaseException | None) -> Outcome:
    """The outcome of a run whose `async with` body was left.

    Args:
        ended: whether a node returned `End`.
        error: the exception leaving the run's `async with`, if any.
        failure: the exception a node step raised (and that was not an interruption), if any; a run whose node
            failed has failed even when the caller caught the error inside the `async with`.

    Example:
        ```python
        from tracegraph.tracing.outcome import run_outcome

        print(run_outcome(ended=True, error=None, failure=None))
        #> completed
        print(run_outcome(ended=False, error=None, failure=None))
        #> interrupted
        print(run_outcome(ended=False, error=None, failure=ValueError('boom')))
        #> failed
        ```
    """
    if failure is not None or (error is not None and not is_interruption(error)):
        return 'failed'
    return 'completed' if ended and error is None else 'interrupted'


def error_type(error: BaseException) -> str:
    """The qualified name of `error`'s class, as OpenTelemetry writes `exception.type`: `ValueError`, `pkg.MyError`."""
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module in (None, 'builtins') else f'{module}.{cls.__qualname__}'
