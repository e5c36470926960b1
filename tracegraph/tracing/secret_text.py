"""What is a secret inside free text (exception messages, reprs, node input held as strings): the rules `Scrubber`
applies to every string by default.

Most secrets in text are a name and a value: `password=...`, `PGPASSWORD=...`, `dbPassword: ...`,
`"apiKey": "..."`, `--token ...`, `'--password', '...'` (a command line's repr). The rules find every such
assignment and scrub the value when its name is a secret's name: the name is split into words (at `_`, `-`, `.` and
camelCase), and it names a secret when one of its words is one of `SECRET_WORDS`, two adjacent words are one of
`SECRET_PAIRS`, its last word is one of `SECRET_LAST_WORDS`, or it contains `password` or `passwd` (`PGPASSWORD`).
So `tokens_used=42`, `passing_score=7`, `keyboard=qwerty` and `author=Ann` stay. A quoted value is scrubbed whole,
spaces included.

Besides assignments: URL credentials (`scheme://user:[Scrubbed]@host`), `Authorization:` and `Cookie:` /
`Set-Cookie:` headers (the whole value but the scheme), `Bearer` tokens, JWT-shaped strings, and the body of PEM
private-key blocks.
"""

from __future__ import annotations

import itertools
import re
from typing import Final

__all__ = ('SECRET_WORDS', 'SECRET_PAIRS', 'SECRET_LAST_WORDS', 'TEXT_RULES', 'is_secret_name', 'secret_span')

SECRET_WORDS: Final = frozenset(
    {
        'password', 'passwd', 'pwd', 'passphrase', 'secret', 'secrets', 'token', 'auth', 'authorization',
        'credential', 'credentials', 'cookie', 'signature', 'sig', 'pin', 'apikey', 'jwt', 'dsn', 'otp', 'bearer',
    }
)  # fmt: skip
SECRET_PAIRS: Final = frozenset(
    {('api', 'key'), ('access', 'key'), ('private', 'key'), ('secret', 'key'), ('session', 'id'), ('client', 'secret')}
)
SECRET_LAST_WORDS: Final = frozenset({'session', 'sid', 'sessionid'})

_WORDS = re.compile(r'[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+')
_NAME = r'[A-Za-z_][\w.-]*'
_VALUE = r"""(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^\s,;&"')\]}]+))"""

TEXT_RULES: Final = (
    # `scheme://user:password@host`: the password (a DSN is one too).
    re.compile(r'(?<=://)[^/\s:@]*:(?P<secret>[^/\s@]+)(?=@)'),
    # `-----BEGIN ... PRIVATE KEY-----`: the key, to its end line (or the text's end, when cut).
    re.compile(
        r'-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?P<secret>.+?)(?=-----END [A-Z0-9 ]*PRIVATE KEY|\Z)', re.S
    ),
    # `Authorization: Basic ...`, `Proxy-Authorization: ...`: the credentials after the scheme.
    re.compile(
        r'(?i)\b(?:proxy-)?authorization["\']?\s*[:=]\s*["\']?(?:(?:basic|bearer|digest|negotiate|ntlm|token)\s+)?'
        r'(?P<secret>[^\s"\',;]+)'
    ),
    # `Cookie: a=1; b=2`, `Set-Cookie: sid=...`: every `name=value` pair of the value.
    re.compile(r'(?i)\b(?:set-)?cookie["\']?\s*:\s*(?P<secret>[^\s;,"\']+(?:;\s*[^\s;,"\'=]+=[^\s;,"\']*)*)'),
    # `Bearer <token>`.
    re.compile(r'(?i)\bbearer\s+(?P<secret>[A-Za-z0-9._~+/=-]+)'),
    # JWT-shaped strings.
    re.compile(r'(?P<secret>\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,})'),
    # `name=value`, `name: value`, `"name": "value"`, `?name=value&`, when `name` is a secret's.
    re.compile(rf'(?<![\w.-])(?P<q>["\']?)(?P<name>{_NAME})(?P=q)\s*[=:]\s*{_VALUE}'),
    # `--name value`, `'--name', 'value'` (a command line, or its repr as a list).
    re.compile(rf"""(?<![\w-])--?(?P<name>{_NAME})(?:\s+|["']\s*,\s*)(?!-){_VALUE}"""),
)
"""Each rule's secret is its `secret` group, or the value group that matched (`dq`, `sq`, `bare`); a rule with a
`name` group applies only when `is_secret_name(name)`."""


def is_secret_name(name: str) -> bool:
    """Whether `name` (an identifier, a header, a flag) names a secret; see the module's rules."""
    lowered = name.lower()
    if 'password' in lowered or 'passwd' in lowered:
        return True
    words = [w.lower() for w in _WORDS.findall(name)]
    if not words:
        return False
    if words[-1] in SECRET_LAST_WORDS or any(w in SECRET_WORDS for w in words):
        return True
    return any(pair in SECRET_PAIRS for pair in itertools.pairwise(words))


def secret_span(match: re.Match[str]) -> tuple[int, int] | None:
    """Where the secret is in a match of one of `TEXT_RULES` (or of a user's pattern), None when it names none."""
    groups = match.re.groupindex
    if 'name' in groups and not is_secret_name(match.group('name')):
        return None
    for group in ('secret', 'dq', 'sq', 'bare'):
        if group in groups and match.group(group) is not None:
            return match.span(group)
    return match.span()
