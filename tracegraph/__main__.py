"""`python -m tracegraph`: the `tracegraph` command."""

from __future__ import annotations

from .cli import main

main()
