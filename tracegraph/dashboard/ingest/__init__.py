"""OTLP in: the HTTP and gRPC receivers, and decoding requests (in worker processes) into the store's batches."""

from __future__ import annotations

__all__ = ()
