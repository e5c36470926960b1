"""The one conversion between OpenTelemetry's timestamps (integer nanoseconds since the epoch) and aware UTC
datetimes, used by the engine's history, the tracing layer, the timelines and the dashboard's store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

__all__ = ('datetime_to_ns', 'ns_to_datetime')

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def datetime_to_ns(value: datetime) -> int:
    """A UTC-aware datetime as integer nanoseconds since the epoch (exact to its microsecond)."""
    return (value - _EPOCH) // _MICROSECOND * 1000


def ns_to_datetime(ns: int) -> datetime:
    """Nanoseconds since the epoch as an aware UTC datetime, exact to the microsecond (no float rounding)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)
