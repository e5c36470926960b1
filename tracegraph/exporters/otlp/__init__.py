"""OTLP on the wire: the SDK's exporters for a target, the sender the spool and the export process share,
and the OTLP encodings."""

from __future__ import annotations

__all__ = ()
