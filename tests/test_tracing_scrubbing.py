"""The scrubber's fast path (JSON in Rust, a literal prefilter) gives exactly what the full walk gives."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic_core import to_json

from tracegraph._utils import uuid4_hex
from tracegraph.tracing.scrubbing import SCRUBBED, Scrubber, ScrubbingOptions

KEYS = [
    'name', 'count', 'notes', 'author', 'authors', 'Accept', 'keyboard', 'monkey', 'ssn_last4',
    'password', 'DB_PASSWORD', 'passwd', 'client_secret', 'Session_Token', 'apiKey', 'api-key', 'API KEY',
    'Authorization', 'credentials', 'Cookie', 'private_key', 'credit_card', 'creditCard',
    'ſecret', 'SEſSION', 'naïve', 'line\nbreak', 'quote"d', 'back\\slash', 'tab\tpassword', '\x01token',
]  # fmt: skip
VALUES = ['plain', 'my token is here', 'Ünïcode', 'multi\nline', 'quote "x"', 0, -7, 1.5, 1e-7, True, None]


def _random_data(rng: random.Random, depth: int = 0) -> Any:
    if depth > 2 or rng.random() < 0.3:
        return rng.choice(VALUES)
    if rng.random() < 0.3:
        return [_random_data(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(KEYS): _random_data(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _full_walk(scrubber: Scrubber, value: Any) -> str:
    return to_json(scrubber.jsonable(value), fallback=repr, serialize_unknown=True).decode()


def test_fast_path_matches_the_full_walk() -> None:
    scrubber = Scrubber(ScrubbingOptions())
    rng = random.Random(1234)
    scrubbed = clean = 0
    for _ in range(3000):
        data = _random_data(rng)
        text = scrubber.dumps(data, 100_000)
        assert text == _full_walk(scrubber, data), data
        assert json.loads(text) == json.loads(_full_walk(scrubber, data))
        if SCRUBBED in text:
            scrubbed += 1
        else:
            clean += 1
    # Both branches were exercised many times.
    assert scrubbed > 500
    assert clean > 500


@pytest.mark.parametrize(
    'key',
    ['ſecret', 'SEſSION', 'TOKEN', 'X-Api-Key', 'line\npassword', 'quote"token', '\x01auth'],
)
def test_keys_that_escape_or_case_fold_are_scrubbed(key: str) -> None:
    text = Scrubber(ScrubbingOptions()).dumps({key: 'hunter2', 'ok': 1}, 1000)
    assert json.loads(text) == {key: SCRUBBED, 'ok': 1}


@dataclass
class Request:
    url: str
    note: str
    author: str


def test_secret_words_in_values_are_kept() -> None:
    node = Request(url='https://x/?q=token', note='the password is in the vault', author='ada')
    assert Scrubber(ScrubbingOptions()).dumps(node, 1000) == (
        '{"url":"https://x/?q=token","note":"the password is in the vault","author":"ada"}'
    )


def test_extra_patterns_and_no_scrubbing() -> None:
    data = {'ticket': 7, 'nested': {'Ticket_No': 'a'}, 'password': 'p'}
    extra = Scrubber(ScrubbingOptions(extra_patterns=['ticket']))
    assert (
        extra.dumps(data, 1000) == '{"ticket":"[Scrubbed]","nested":{"Ticket_No":"[Scrubbed]"},"password":"[Scrubbed]"}'
    )
    assert Scrubber(None).dumps(data, 1000) == '{"ticket":7,"nested":{"Ticket_No":"a"},"password":"p"}'


def test_truncation_applies_on_both_paths() -> None:
    scrubber = Scrubber(ScrubbingOptions())
    assert scrubber.dumps({'text': 'x' * 100}, 30) == '{"text":"xxxxxxx...[truncated]'
    assert scrubber.dumps({'token': 't', 'text': 'x' * 100}, 40) == '{"token":"[Scrubbed]","tex...[truncated]'


def test_uuid4_hex_is_a_version_4_uuid() -> None:
    ids = {uuid4_hex() for _ in range(2000)}
    assert len(ids) == 2000
    for run_id in list(ids)[:200]:
        parsed = uuid.UUID(hex=run_id)
        assert (parsed.version, parsed.variant, parsed.hex) == (4, uuid.RFC_4122, run_id)
