"""Scrubbing secrets out of everything tracegraph puts on spans, and cutting it to a set length.

Two kinds of rule, both on by default:

- **Keys.** A value is scrubbed when any key on its path (a field, a dict key, or the first item of a two-item
  list or tuple, as `[('Authorization', 'Bearer x')]` headers are held) matches one of `DEFAULT_SCRUB_PATTERNS`,
  case-insensitively and anywhere in the key: `db_password`, `Authorization`, `user.session_id`.
- **Values.** Inside every string (a field's value, an object written as its `repr`, an exception's message and
  stack trace, a span status) the secrets `secret_text` finds are replaced: values assigned to a secret's name in
  any spelling (`password=`, `PGPASSWORD=`, `dbPassword: `, `"apiKey": "..."`, `?token=`, `--password X`), URL
  credentials (`https://user:[Scrubbed]@host`, DSNs alike), `Authorization` and cookie headers, `Bearer` tokens,
  JWT-shaped strings and PEM private keys.

What is not scrubbed: secrets under keys and in text that match no pattern (add yours with
`ScrubbingOptions.extra_patterns` / `extra_value_patterns`), and span names (node and graph ids).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_json, to_jsonable_python

from .secret_text import TEXT_RULES, secret_span

__all__ = (
    'DEFAULT_SCRUB_PATTERNS',
    'DEFAULT_VALUE_PATTERNS',
    'SCRUBBED',
    'ScrubMatch',
    'ScrubbingOptions',
    'Scrubber',
    'TRUNCATED_SUFFIX',
)

DEFAULT_SCRUB_PATTERNS: tuple[str, ...] = (
    'password',
    'passwd',
    'secret',
    'token',
    r'api[._ -]?key',
    r'auth(?!ors?\b)',
    'credential',
    'cookie',
    'session',
    r'private[._ -]?key',
    'ssn',
    r'credit[._ -]?card',
    r'(?<![a-z])pwd(?![a-z])',
    r'(?<![a-z])pin(?![a-z])',
    'passphrase',
    'bearer',
    r'(?<![a-z])jwt(?![a-z])',
    r'(?<![a-z])dsn(?![a-z])',
    r'access[._ -]?key(?:[._ -]?id)?',
    'signature',
)
"""Regular expressions matched against keys; `auth` does not match `author(s)`, and the short words (`pwd`, `pin`,
`jwt`, `dsn`) match as words only, so `spinner` or `keyboard` stay."""

DEFAULT_VALUE_PATTERNS: tuple[str, ...] = tuple(rule.pattern for rule in TEXT_RULES)
"""The regular expressions matched inside strings (`secret_text.TEXT_RULES`, which says what they find)."""

SCRUBBED = '[Scrubbed]'
TRUNCATED_SUFFIX = '...[truncated]'

# Every lowercase ASCII text one of the default key or value patterns matches contains one of these literals:
# passw passp pwd pin secret session ssn sid sig token key auth access credential cookie credit bearer jwt dsn otp
# :// eyj. Grouped by their first letters, which `re` then tries once per position (1.2-1.5x faster on node input).
_DEFAULT_LITERALS = re.compile(
    'p(?:ass[wp]|wd|in)|s(?:e(?:cret|ssion)|sn|id|ig)|token|key|a(?:uth|ccess)|c(?:redential|ookie|redit)'
    '|bearer|jwt|dsn|otp|://|eyj'
)
# Values that `_scrub` hands back unchanged, checked by exact type before the slower `isinstance` tests.
_LEAF_TYPES = frozenset({str, int, float, bool, type(None)})
# Keys repeat from step to step (a node's fields); remembering their pattern matches is bounded by this.
_KEY_CACHE_SIZE = 1024


@dataclass(kw_only=True, frozen=True)
class ScrubMatch:
    """A value about to be scrubbed, handed to `ScrubbingOptions.callback`."""

    path: tuple[str | int, ...]
    """Keys and list indexes from the attribute's root to the value."""
    value: Any
    """The JSON-able value found there."""
    pattern_match: re.Match[str]
    """The match of a pattern in the key."""


@dataclass(kw_only=True, frozen=True)
class ScrubbingOptions:
    """Scrubbing configuration: extra patterns, and a callback that may keep a value.

    Example:
        ```python
        from tracegraph.tracing.scrubbing import Scrubber, ScrubbingOptions

        keep_session_count = ScrubbingOptions(
            extra_patterns=['ticket'],
            callback=lambda m: m.value if m.path[-1] == 'session_count' else None,
        )
        scrubber = Scrubber(keep_session_count)
        print(scrubber.dumps({'ticket_no': 7, 'session_count': 3, 'user': {'password': 'hunter2'}}, 200))
        #> {"ticket_no":"[Scrubbed]","session_count":3,"user":{"password":"[Scrubbed]"}}
        ```
    """

    extra_patterns: Sequence[str] = ()
    """Regular expressions matched against keys, in addition to `DEFAULT_SCRUB_PATTERNS`."""
    extra_value_patterns: Sequence[str] = ()
    """Regular expressions matched inside strings, in addition to `DEFAULT_VALUE_PATTERNS` (a `secret` group
    names the part to replace; the whole match without one)."""
    callback: Callable[[ScrubMatch], Any] | None = None
    """Called for every value about to be scrubbed (for a value pattern, `value` is the secret text); a return
    value other than None is kept instead."""


class Scrubber:
    """Turns values into scrubbed, length-limited JSON strings for span attributes."""

    def __init__(self, options: ScrubbingOptions | None) -> None:
        """Create a scrubber; `options=None` turns scrubbing off."""
        self._callback = options.callback if options else None
        if options is None:
            self._pattern = None
        else:
            patterns = (*DEFAULT_SCRUB_PATTERNS, *options.extra_patterns)
            self._pattern = re.compile('|'.join(f'(?:{p})' for p in patterns), re.IGNORECASE)
        self._values = (
            None if options is None else [*TEXT_RULES, *(re.compile(p) for p in options.extra_value_patterns)]
        )
        self._key_matches: dict[str, re.Match[str] | None] = {}
        # With the default patterns, JSON whose text holds none of their literals has nothing to scrub.
        default = options is not None and not options.extra_patterns and not options.extra_value_patterns
        self._literals = _DEFAULT_LITERALS if default else None

    def jsonable(self, value: Any) -> Any:
        """`value` as JSON-able Python data (unknown objects as their `repr`), scrubbed."""
        return self.scrub(to_jsonable_python(value, fallback=repr, serialize_unknown=True))

    def scrub(self, data: Any) -> Any:
        """A copy of JSON-able `data` with the values under secret-looking keys replaced."""
        return data if self._pattern is None else self._scrub(data, ())

    def dumps(self, value: Any, max_length: int) -> str:
        """`value` as compact JSON, scrubbed, cut to `max_length` characters."""
        if self._pattern is None or self._literals is not None:
            # Fast path, run for every node step: serialise in Rust, and walk the data only when a key may match.
            text = to_json(value, fallback=repr, serialize_unknown=True).decode()
            if self._pattern is None or not self._may_need_scrubbing(text):
                return truncate(text, max_length)
        return truncate(to_json(self.jsonable(value), fallback=repr, serialize_unknown=True).decode(), max_length)

    def text(self, text: str, max_length: int | None = None) -> str:
        """`text` (an exception message, a stack trace, a status) with the secrets in it replaced, and cut."""
        if self._values is not None and self._may_need_scrubbing(text):
            text = self._scrub_text(text, ())
        return text if max_length is None else truncate(text, max_length)

    def dumps_jsonable(self, data: Any, max_length: int) -> str:
        """Already JSON-able, already scrubbed `data` as compact JSON cut to `max_length` characters."""
        return truncate(to_json(data, fallback=repr, serialize_unknown=True).decode(), max_length)

    def _may_need_scrubbing(self, text: str) -> bool:
        # JSON never escapes letters, so each literal in a key is in the text. Non-ASCII text takes the full walk:
        # re.IGNORECASE matches letters (like 'ſ' for 's') that `lower()` leaves alone.
        literals = self._literals
        return literals is None or not text.isascii() or literals.search(text.lower()) is not None

    def _match(self, key: str) -> re.Match[str] | None:
        try:
            return self._key_matches[key]
        except KeyError:
            match = self._pattern.search(key) if self._pattern else None
            if len(self._key_matches) < _KEY_CACHE_SIZE:
                self._key_matches[key] = match
            return match

    def _scrub(self, data: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(data, str):
            return self._scrub_text(data, path)
        if isinstance(data, Mapping):
            out: dict[str, Any] = {}
            for key, value in data.items():  # pyright: ignore[reportUnknownVariableType]
                key = str(key)  # pyright: ignore[reportUnknownArgumentType]
                match = self._match(key)
                if match is not None:
                    out[key] = self._replacement((*path, key), value, match)
                elif type(value) in _LEAF_TYPES and type(value) is not str:  # pyright: ignore[reportUnknownArgumentType]
                    out[key] = value
                else:
                    out[key] = self._scrub(value, (*path, key))
            return out
        if isinstance(data, list):
            items: list[Any] = data  # pyright: ignore[reportUnknownVariableType]
            # A (key, value) pair, as headers are often held: `[('Authorization', 'Bearer x')]`.
            if len(items) == 2 and isinstance(items[0], str) and (match := self._match(items[0])) is not None:
                return [items[0], self._replacement((*path, 1), items[1], match)]
            return [self._scrub(v, (*path, i)) for i, v in enumerate(items)]
        return data

    def _scrub_text(self, text: str, path: tuple[str | int, ...]) -> str:
        if self._values is None:
            return text
        for rule in self._values:
            match = rule.search(text)
            if match is None:
                continue
            pieces: list[str] = []
            done = 0
            while match is not None:
                where = secret_span(match)
                if where is None or text[where[0] : where[1]] == SCRUBBED:
                    # Not a secret's name (or replaced by an earlier rule): look again from after the name, so that
                    # `note: password=x` finds the assignment inside the value it passed over.
                    resume = match.end('name') if 'name' in rule.groupindex else match.end()
                else:
                    start, end = where
                    pieces.append(text[done:start])
                    pieces.append(self._replacement_text(text[start:end], path, match))
                    done = resume = end
                match = rule.search(text, max(resume, match.start() + 1))
            text = ''.join(pieces) + text[done:]
        return text

    def _replacement_text(self, secret: str, path: tuple[str | int, ...], match: re.Match[str]) -> str:
        if self._callback is not None:
            kept = self._callback(ScrubMatch(path=path, value=secret, pattern_match=match))
            if kept is not None:
                return str(kept)
        return SCRUBBED

    def _replacement(self, path: tuple[str | int, ...], value: Any, match: re.Match[str]) -> Any:
        if self._callback is not None:
            kept = self._callback(ScrubMatch(path=path, value=value, pattern_match=match))
            if kept is not None:
                return kept
        return SCRUBBED


def truncate(text: str, max_length: int) -> str:
    """`text` cut to at most `max_length` characters, ending in `...[truncated]` when cut."""
    if len(text) <= max_length:
        return text
    return text[: max_length - len(TRUNCATED_SUFFIX)] + TRUNCATED_SUFFIX
