"""Resolve and validate exporter settings from `configure()` arguments and the standard `OTEL_*` variables.

Every bad value fails here, before anything is built, with a `ConfigurationError` naming the setting
(the argument or the environment variable it came from) and the value.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal
from urllib.parse import unquote, urlsplit

__all__ = (
    'exporters_from_env',
    'disabled_by_env',
    'http_url',
    'ConfigurationError',
    'Protocol',
    'OtlpTarget',
    'resolve_protocol',
    'resolve_target',
    'parse_headers',
    'check_endpoint',
    'check_spool_dir',
    'check_file',
    'otlp_requested',
    'export_process_from_env',
    'EXPORT_PROCESS_ENV',
    'require_extra',
    'GRPC_FEATURE',
)

Protocol = Literal['http/protobuf', 'grpc']
Signal = Literal['traces', 'metrics']

_PROTOCOLS: tuple[Protocol, ...] = ('http/protobuf', 'grpc')
_DEFAULT_ENDPOINTS: dict[Protocol, str] = {'http/protobuf': 'http://localhost:4318', 'grpc': 'http://localhost:4317'}


class ConfigurationError(ValueError):
    """A setting given to `configure()` (or read from the environment) is invalid."""


@dataclass(frozen=True, kw_only=True)
class OtlpTarget:
    """Where and how one signal (traces or metrics) is sent over OTLP."""

    protocol: Protocol
    endpoint: str
    """Full URL: for HTTP it includes the signal path (`/v1/traces`), for gRPC it is `scheme://host:port`."""
    headers: dict[str, str]


def _env(name: str) -> str | None:
    value = os.environ.get(name, '').strip()
    return value or None


_EXPORTER_CHOICES = frozenset(('otlp', 'console', 'none'))
_TRUE = frozenset(('1', 'true', 'yes', 'on'))
_FALSE = frozenset(('0', 'false', 'no', 'off'))


def exporters_from_env(signal: Signal) -> frozenset[str] | None:
    """`OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER` as a set of `otlp`, `console`, `none`; None when unset.

    Raises:
        ConfigurationError: a value other than those three, naming the variable and the value.
    """
    name = f'OTEL_{signal.upper()}_EXPORTER'
    value = _env(name)
    if value is None:
        return None
    chosen = frozenset(v.strip().lower() for v in value.split(',') if v.strip())
    unknown = sorted(chosen - _EXPORTER_CHOICES)
    if unknown:
        raise ConfigurationError(
            f'{name}={value!r}: tracegraph knows otlp, console and none (comma-separated), not {", ".join(unknown)}.'
        )
    return chosen - {'none'} if 'none' not in chosen or len(chosen) > 1 else frozenset()


def disabled_by_env() -> str | None:
    """The variable that turns tracegraph's exporters off (`TRACEGRAPH_DISABLED`, `OTEL_SDK_DISABLED`), if one does."""
    for name in ('TRACEGRAPH_DISABLED', 'OTEL_SDK_DISABLED'):
        if (_env(name) or '').lower() in _TRUE:
            return name
    return None


EXPORT_PROCESS_ENV: Final = 'TRACEGRAPH_EXPORT_PROCESS'
"""Variable choosing whether `configure()` exports OTLP spans from a child process."""


def export_process_from_env() -> bool | None:
    """`TRACEGRAPH_EXPORT_PROCESS` as a bool (`1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`); None when unset.

    Raises:
        ConfigurationError: any other value, naming the variable and the value.
    """
    value = _env(EXPORT_PROCESS_ENV)
    if value is None:
        return None
    if (lowered := value.lower()) in _TRUE | _FALSE:
        return lowered in _TRUE
    raise ConfigurationError(f'{EXPORT_PROCESS_ENV}={value!r}: expected one of 1, true, yes, on, 0, false, no, off.')


def otlp_requested(endpoint: str | None) -> bool:
    """Whether an OTLP endpoint was given as an argument or through any standard variable."""
    names = ('OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT')
    return endpoint is not None or any(_env(n) for n in names)


def resolve_protocol(protocol: str | None, signal: Signal) -> Protocol:
    """The protocol from the argument, else `OTEL_EXPORTER_OTLP_{SIGNAL}_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`.

    Raises:
        ConfigurationError: for anything but `http/protobuf` or `grpc`.
    """
    setting, value = 'protocol=', protocol
    if value is None:
        for name in (f'OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL', 'OTEL_EXPORTER_OTLP_PROTOCOL'):
            if (value := _env(name)) is not None:
                setting = name
                break
    if value is None:
        return 'http/protobuf'
    for known in _PROTOCOLS:
        if value == known:
            return known
    raise ConfigurationError(f"Unknown OTLP protocol {value!r} in {setting}: expected 'http/protobuf' or 'grpc'.")


def http_url(host: str, port: int, path: str = '') -> str:
    """`http://host:port/path` for a listening address, with an IPv6 address in brackets (`http://[::1]:4318`)."""
    shown = f'[{host}]' if ':' in host else host
    return f'http://{shown}:{port}{path}'


def check_endpoint(value: str, setting: str) -> str:
    """Check that `value` is an `http://` or `https://` URL with a host, and return it without a trailing slash.

    Raises:
        ConfigurationError: naming `setting` and `value`.
    """
    problem = None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as e:
        parts, port, problem = None, None, str(e)
    if parts is not None and (parts.scheme not in ('http', 'https') or not parts.hostname):
        problem = "expected an http:// or https:// URL such as 'http://localhost:4318'"
    if problem is not None or port == 0:
        raise ConfigurationError(f'Invalid OTLP endpoint {value!r} in {setting}: {problem or "port 0"}.')
    return value.rstrip('/')


def _signal_url(base: str, signal: Signal) -> str:
    path = f'/v1/{signal}'
    return base if base.endswith(path) else base + path


def resolve_target(
    *, endpoint: str | None, protocol: str | None, headers: Mapping[str, str] | str | None, signal: Signal
) -> OtlpTarget:
    """Resolve one signal's OTLP target with the documented precedence of the OTLP exporter specification.

    `endpoint=` and `OTEL_EXPORTER_OTLP_ENDPOINT` are base URLs (HTTP appends `/v1/traces` or `/v1/metrics`);
    `OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT` is used as it is. Signal headers are merged over the general ones.
    """
    proto = resolve_protocol(protocol, signal)
    signal_var = f'OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT'
    if endpoint is not None:
        url = check_endpoint(endpoint, 'endpoint=')
        url = _signal_url(url, signal) if proto == 'http/protobuf' else url
    elif (value := _env(signal_var)) is not None:
        url = check_endpoint(value, signal_var)
    else:
        value = _env('OTEL_EXPORTER_OTLP_ENDPOINT')
        setting = 'OTEL_EXPORTER_OTLP_ENDPOINT'
        url = check_endpoint(value, setting) if value is not None else _DEFAULT_ENDPOINTS[proto]
        url = _signal_url(url, signal) if proto == 'http/protobuf' else url
    if headers is not None:
        merged = parse_headers(headers, 'headers=')
    else:
        merged: dict[str, str] = {}
        for name in ('OTEL_EXPORTER_OTLP_HEADERS', f'OTEL_EXPORTER_OTLP_{signal.upper()}_HEADERS'):
            if (value := _env(name)) is not None:
                merged.update(parse_headers(value, name))
    return OtlpTarget(protocol=proto, endpoint=url, headers=merged)


def parse_headers(value: Mapping[str, str] | str, setting: str) -> dict[str, str]:
    """Parse `key1=value1,key2=value2` (URL-encoded, W3C baggage style), or check a mapping.

    Raises:
        ConfigurationError: for an item without `=` or with an empty key, naming the item.
    """
    if not isinstance(value, str):
        bad = [k for k, v in value.items() if not isinstance(k, str) or not k.strip() or not isinstance(v, str)]
        if bad:
            raise ConfigurationError(f'Cannot read OTLP headers from {setting}: bad header {bad[0]!r}.')
        return {k.strip().lower(): v for k, v in value.items()}
    result: dict[str, str] = {}
    for item in value.split(','):
        if not item.strip():
            continue
        key, sep, val = item.partition('=')
        key = unquote(key).strip()
        if not sep or not key:
            shown = item if len(item) <= 40 else item[:40] + '…'
            raise ConfigurationError(
                f'Cannot read OTLP headers from {setting}: {shown!r} is not a key=value pair '
                "(expected 'key1=value1,key2=value2')."
            )
        result[key.lower()] = unquote(val).strip()
    return result


def check_spool_dir(value: str | os.PathLike[str], setting: str = 'spool directory') -> Path:
    """Create the spool directory if needed and prove it is writable.

    Raises:
        ConfigurationError: naming the directory and the OS error.
    """
    path = Path(value)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)  # unsent spans are private: this user's alone
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ConfigurationError(f'{setting} {str(path)!r} is not a writable directory: {e}') from e
    return path


def check_file(value: str | os.PathLike[str]) -> Path:
    """Check that the JSON Lines file can be opened for appending (it is created when missing).

    Raises:
        ConfigurationError: naming the file and the OS error.
    """
    path = Path(value)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
    except OSError as e:
        raise ConfigurationError(f'file {str(path)!r} cannot be opened for appending: {e}') from e
    return path


GRPC_FEATURE: Final = "OTLP over gRPC (protocol 'grpc')"
"""What the `grpc` extra brings, as `require_extra` names it."""


def require_extra(extra: str, feature: str, *, modules: tuple[str, ...]) -> None:
    """Fail with one line naming `feature` and the extra that brings it, unless every one of `modules` is installed.

    `[otlp]` is OTLP over HTTP alone, so gRPC and Prometheus users add theirs; finding out at `configure()` beats a
    `ModuleNotFoundError` from the first export, after the app started.
    """
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            raise ConfigurationError(
                f"{feature} needs the '{extra}' extra ({module} is not installed): pip install 'tracegraph[{extra}]'"
            )
