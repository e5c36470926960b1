"""Loopback ports for the tests' own servers (stdlib only, so any test may use it, the lowest-versions run's too)."""

from __future__ import annotations

import socket

__all__ = ('free_port',)


def free_port() -> int:
    """A loopback port nobody listens on right now (a later bind may still race, which tests tolerate)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
