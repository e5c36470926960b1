"""The `tracegraph` command's entry point (`tracegraph ...`, `python -m tracegraph ...`).

The commands themselves (`cli_commands`) need the `dashboard` extra (Typer, Rich, DuckDB, Starlette); in a core or
`[otlp]` install this says, in one line, which extra to install instead of failing with a traceback.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

__all__ = ('main',)

_NEEDED = ('typer', 'rich')
EXTRA_HINT = "pip install 'tracegraph[dashboard]'"


def missing_modules() -> list[str]:
    """The modules the command line needs that are not installed."""
    return [name for name in _NEEDED if importlib.util.find_spec(name) is None]


def main() -> None:
    """Entry point of the `tracegraph` script."""
    if sys.argv[1:] == ['--version']:  # answered in every install, with or without the extra
        from . import __version__

        print(f'tracegraph {__version__}')
        return
    missing = missing_modules()
    if missing:
        print(
            f"tracegraph: the command line needs the 'dashboard' extra ({', '.join(missing)} not installed): "
            f'{EXTRA_HINT}',
            file=sys.stderr,
        )
        raise SystemExit(2)
    from .cli_commands import app

    app()


def __getattr__(name: str) -> Any:
    if name == 'app':  # `from tracegraph.cli import app`, for tests and embedding
        from .cli_commands import app

        return app
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


if __name__ == '__main__':
    main()
