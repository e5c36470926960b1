"""Secrets never leave the process: the bytes that reach a loopback OTLP receiver and a JSON Lines file hold none.

Each secret below was seen on the wire before; every one is planted in a node's input, the run's state, the run's
output and an exception the node raises, and the raw request bodies and file bytes are searched for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from exporters_helpers import OtlpHttpReceiver, wait_until
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tracegraph import BaseNode, End, Graph, GraphRunContext, InstrumentationSettings, ScrubbingOptions
from tracegraph.exporters import JsonLinesSpanExporter
from tracegraph.tracing.scrubbing import Scrubber

pytestmark = pytest.mark.anyio

SECRETS = {
    'url credentials': ('https://deploy:Hunter2Url@git.example.com/repo', 'Hunter2Url'),
    'dsn': ('postgresql://app:DsnPw77@db:5432/prod', 'DsnPw77'),
    'query api_key': ('https://api.example.com/v1/items?api_key=QueryKey99&page=2', 'QueryKey99'),
    'password= in text': ('login failed for bob password=TextPw55 retrying', 'TextPw55'),
    'token: in text': ('config token: TokTok66 loaded', 'TokTok66'),
    'bearer': ('Authorization: Bearer BearerTok44', 'BearerTok44'),
    'jwt': ('eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJlSldUMzM', 'c2lnbmF0dXJlSldUMzM'),
}
KEYED = {  # secrets held under keys the old list missed
    'pwd': 'PwdVal11',
    'passphrase': 'Phrase22',
    'bearer': 'BearerVal33',
    'jwt': 'JwtVal44',
    'dsn': 'DsnVal55',
    'access_key_id': 'AKIAVAL66',
    'signature': 'SigVal77',
}


class Client:
    """An object with no JSON form: written with its `repr`, whose `token` field is no key."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f'Client(token={self.token!r})'


@dataclass
class Vault:
    notes: list[str] = field(default_factory=list[str])


@dataclass
class Leaky(BaseNode[Vault, None, str]):
    texts: list[str]
    keyed: dict[str, str]
    headers: list[tuple[str, str]]
    client: Any
    fail: bool = False

    async def run(self, ctx: GraphRunContext[Vault]) -> End[str]:
        ctx.state.notes.extend(self.texts)
        if self.fail:
            raise PermissionError(f'cannot open {self.texts[0]} with api_key=ExcKey88 ' + ' | '.join(self.texts))
        return End(' / '.join(self.texts))


PLAINTEXTS = (
    [secret for _, secret in SECRETS.values()] + list(KEYED.values()) + ['HeaderTok12', 'ReprTok13', 'ExcKey88']
)


def _node(fail: bool) -> Leaky:
    return Leaky(
        texts=[text for text, _ in SECRETS.values()],
        keyed=KEYED,
        headers=[('Authorization', 'Bearer HeaderTok12'), ('Accept', 'application/json')],
        client=Client('ReprTok13'),
        fail=fail,
    )


async def test_no_secret_reaches_the_otlp_wire_or_the_file(tmp_path: Path) -> None:
    file = tmp_path / 'spans.jsonl'
    with OtlpHttpReceiver() as receiver:
        provider = TracerProvider()
        provider.add_span_processor(
            SimpleSpanProcessor(
                OTLPSpanExporter(endpoint=f'{receiver.endpoint}/v1/traces', compression=Compression.NoCompression)
            )
        )
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(file)))
        graph = Graph(
            nodes=[Leaky], name='vault', instrumentation=InstrumentationSettings(tracer_provider=provider, state='full')
        )
        result = await graph.run(_node(fail=False), state=Vault())
        assert 'Hunter2Url' in result.output  # the application itself still sees its data
        with pytest.raises(PermissionError):
            await graph.run(_node(fail=True), state=Vault())
        provider.force_flush()
        assert wait_until(lambda: len(receiver.spans()) == 4)
        wire = b''.join(receiver.bodies)
        provider.shutdown()
    on_disk = file.read_bytes()
    assert b'[Scrubbed]' in wire and b'[Scrubbed]' in on_disk
    assert b'exception.stacktrace' in on_disk  # the exception was recorded, scrubbed
    leaked = [s for s in PLAINTEXTS if s.encode() in wire or s.encode() in on_disk]
    assert leaked == []
    # What stays readable: the words around the secrets, and look-alike keys.
    assert b'git.example.com' in on_disk and b'deploy:' in on_disk and b'PermissionError' in on_disk


@pytest.mark.parametrize(('case', 'text_and_secret'), list(SECRETS.items()), ids=list(SECRETS))
def test_each_secret_in_text_is_scrubbed(case: str, text_and_secret: tuple[str, str]) -> None:
    text, secret = text_and_secret
    scrubbed = Scrubber(ScrubbingOptions()).text(text)
    assert secret not in scrubbed and '[Scrubbed]' in scrubbed, case


def test_words_that_only_look_like_keys_stay() -> None:
    scrubber = Scrubber(ScrubbingOptions())
    assert scrubber.dumps({'author': 'a', 'spinner': 'b', 'keyboard': 'c', 'authors': ['d']}, 200) == (
        '{"author":"a","spinner":"b","keyboard":"c","authors":["d"]}'
    )
    assert scrubber.text('the author spun the spinner on the keyboard') == 'the author spun the spinner on the keyboard'


def test_options_add_value_patterns_and_keep_chosen_values() -> None:
    options = ScrubbingOptions(
        extra_value_patterns=[r'acct-(?P<secret>\d+)'],
        callback=lambda m: m.value if m.value == 'public-token' else None,
    )
    scrubber = Scrubber(options)
    assert scrubber.text('acct-12345 token=public-token token=private') == (
        'acct-[Scrubbed] token=public-token token=[Scrubbed]'
    )
    assert Scrubber(None).text('password=plain') == 'password=plain'  # scrub=False
