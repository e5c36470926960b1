"""OTLP in: the HTTP and gRPC receivers, decoding (in worker processes), deduplication and group commit."""

from __future__ import annotations

__all__ = ()
