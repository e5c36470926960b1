"""`python -m tracegraph`: the `tracegraph` command."""

from __future__ import annotations

from .cli import main

if __name__ == '__main__':  # imported (by a docs walker, say), it runs nothing
    main()
