"""Secrets never leave the process: the bytes that reach a loopback OTLP receiver and a JSON Lines file hold none.

Each secret below was seen on the wire before; every one is planted in a node's input, the run's state, the run's
output and an exception the node raises, and the raw request bodies and file bytes are searched for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from exporters_helpers import OtlpHttpReceiver, wait_until
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tracegraph import BaseNode, End, Graph, GraphRunContext, InstrumentationSettings, ScrubbingOptions
from tracegraph.exporters import JsonLinesSpanExporter, configure, read_spans
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
    'env SECRET_KEY': ('export SECRET_KEY=EnvSecret01 DEBUG=1', 'EnvSecret01'),
    'env PGPASSWORD': ('PGPASSWORD=PgPass02 psql -h db', 'PgPass02'),
    'env AWS_SECRET_ACCESS_KEY': ('AWS_SECRET_ACCESS_KEY=AwsSecret03 aws s3 ls', 'AwsSecret03'),
    'camelCase dbPassword': ('connect(dbPassword=CamelPw04, host=db)', 'CamelPw04'),
    'camelCase accessToken': ('{accessToken: CamelTok05}', 'CamelTok05'),
    'camelCase clientSecret': ('clientSecret=CamelSec06;', 'CamelSec06'),
    'camelCase refreshToken': ('refreshToken: CamelRef07', 'CamelRef07'),
    'json apiKey in a string': ('payload {"apiKey": "JsonKey08", "n": 1}', 'JsonKey08'),
    'basic auth header': ('Authorization: Basic QmFzaWNBdXRoMDk=', 'QmFzaWNBdXRoMDk'),
    'flag --password': ("Command '['pg_dump', '--password', 'FlagPw10', 'db']' returned 1", 'FlagPw10'),
    'flag --token': ('deploy --token FlagTok11 --env prod', 'FlagTok11'),
    'cookie header': ('Cookie: session=CookieSess12; theme=dark', 'CookieSess12'),
    'set-cookie header': ('Set-Cookie: sid=SetCookie13; HttpOnly', 'SetCookie13'),
    'pem private key': (
        '-----BEGIN RSA PRIVATE KEY-----\nMIIEPemBody14xyz\n-----END RSA PRIVATE KEY-----',
        'MIIEPemBody14xyz',
    ),
    'quoted password with spaces': ('password="P@ss w0rd x15" rejected', 'w0rd x15'),
    'pin assignment': ('card pin=4716 locked', '4716'),
}
CONTROLS = ('author=Ann', 'keyboard=qwerty', 'passing_score=7', 'tokens_used=42', 'the weather is fine today')
"""Look-alikes that must stay readable."""
KEYED = {  # secrets held under keys the old list missed
    'pwd': 'PwdVal11',
    'passphrase': 'Phrase22',
    'bearer': 'BearerVal33',
    'jwt': 'JwtVal44',
    'dsn': 'DsnVal55',
    'access_key_id': 'AKIAVAL66',
    'signature': 'SigVal77',
    'pin': 'PinVal78',
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


TEXTS = [text for text, _ in SECRETS.values()] + list(CONTROLS)


PLAINTEXTS = (
    [secret for _, secret in SECRETS.values()] + list(KEYED.values()) + ['HeaderTok12', 'ReprTok13', 'ExcKey88']
)


def _node(fail: bool) -> Leaky:
    return Leaky(
        texts=TEXTS,
        keyed=KEYED,
        headers=[('Authorization', 'Bearer HeaderTok12'), ('Accept', 'application/json')],
        client=Client('ReprTok13'),
        fail=fail,
    )


@pytest.mark.parametrize('state', ['diff', 'full'])
async def test_no_secret_reaches_the_otlp_wire_or_the_file(tmp_path: Path, state: Literal['diff', 'full']) -> None:
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
            nodes=[Leaky], name='vault', instrumentation=InstrumentationSettings(tracer_provider=provider, state=state)
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
    for control in CONTROLS:  # in every place the node's texts went: input, state, output, exception
        assert control.encode() in wire and control.encode() in on_disk, control
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


async def test_secret_resource_attributes_are_scrubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('OTEL_RESOURCE_ATTRIBUTES', 'db.password=ResPw31,deployment.environment=prod,note=pin=4242')
    file = tmp_path / 'spans.jsonl'
    with configure(file=file, metrics=False, set_global=False) as telemetry:
        graph = Graph(
            nodes=[Leaky],
            name='vault',
            instrumentation=InstrumentationSettings(tracer_provider=telemetry.tracer_provider),
        )
        await graph.run(Leaky(texts=['x'], keyed={}, headers=[], client=None), state=Vault())
    (span, *_) = read_spans(file)
    assert span.resource.attributes['db.password'] == '[Scrubbed]'
    assert span.resource.attributes['note'] == 'pin=[Scrubbed]'
    assert span.resource.attributes['deployment.environment'] == 'prod'
    assert b'ResPw31' not in file.read_bytes() and b'4242' not in file.read_bytes()
