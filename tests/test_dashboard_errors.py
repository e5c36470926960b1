"""Bad input and authentication: every refusal with its exact status and message, and the server goes on."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import httpx
import pytest
from google.rpc.status_pb2 import Status
from serve_helpers import emit_run, exporting_provider, protobuf_body, running_server

from tracegraph.dashboard.server.server import ServerThread

LIMIT = 4096
PROTO = 'application/x-protobuf'
TOKEN = 's3cret-token-of-24-chars'
AUTH_MESSAGE = 'Missing or wrong bearer token: send Authorization: Bearer TOKEN.'


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with running_server(max_body=LIMIT) as srv:
        yield srv


@pytest.fixture
def client(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def sample_body() -> bytes:
    with exporting_provider() as (provider, memory):
        emit_run(provider)
    return protobuf_body(memory.get_finished_spans())


def status_of(reply: httpx.Response) -> tuple[int, int, str]:
    """(HTTP status, gRPC code, message) of an OTLP error reply in either encoding."""
    if reply.headers['content-type'] == PROTO:
        status = Status.FromString(reply.content)
        return reply.status_code, status.code, status.message
    data = reply.json()
    return reply.status_code, data['code'], data['message']


MEDIA = 'send application/x-protobuf or application/json.'


@pytest.mark.parametrize(
    ('headers', 'body', 'expected'),
    [
        pytest.param(
            {'Content-Type': 'text/plain'}, b'hello', (415, 3, f"Unsupported media type 'text/plain': {MEDIA}"),
            id='text-plain',
        ),
        pytest.param({}, b'hello', (415, 3, f"Unsupported media type '(none)': {MEDIA}"), id='no-content-type'),
        pytest.param(
            {'Content-Type': PROTO, 'Content-Encoding': 'br'}, b'x',
            (415, 3, "Unsupported Content-Encoding 'br': send gzip or identity."), id='brotli',
        ),
        pytest.param(
            {'Content-Type': PROTO}, b'\xff\xff\xff',
            (400, 3, 'Malformed protobuf body: it is not a valid ExportTraceServiceRequest.'), id='bad-protobuf',
        ),
        pytest.param(
            {'Content-Type': 'application/json'}, b'{"resourceSpans": [',
            (400, 3, 'Malformed JSON body: Expecting value: line 1 column 20 (char 19).'), id='bad-json',
        ),
        pytest.param(
            {'Content-Type': 'application/json; charset=utf-8'}, b'[1, 2]',
            (400, 3, 'Malformed JSON body: expected an object holding a ExportTraceServiceRequest.'), id='json-array',
        ),
        pytest.param(
            {'Content-Type': 'application/json'}, b'{"resourceSpans": 5}',
            (400, 3, 'Invalid OTLP JSON: Failed to parse resourceSpans field: repeated field resourceSpans must be '
             'in [] which is 5 at ExportTraceServiceRequest.'),
            id='json-wrong-type',
        ),
        pytest.param(
            {'Content-Type': 'application/json'},
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "0102030405060708"}]}]}]}',
            (400, 3, "Invalid OTLP JSON: traceId 'zz' is not hex."), id='json-bad-hex',
        ),
        pytest.param(
            {'Content-Type': PROTO, 'Content-Encoding': 'gzip'}, b'not gzip at all',
            (400, 3, 'Malformed gzip body: Error -3 while decompressing data: incorrect header check.'),
            id='bad-gzip',
        ),
        pytest.param(
            {'Content-Type': PROTO, 'Content-Encoding': 'gzip'}, gzip.compress(b'\x0a\x00' * 100)[:-12],
            (400, 3, 'Malformed gzip body: the stream is truncated.'), id='truncated-gzip',
        ),
        pytest.param(
            {'Content-Type': PROTO}, b'\x00' * (LIMIT + 1),
            (413, 8, f'Request body is larger than {LIMIT} bytes.'), id='too-large',
        ),
        pytest.param(
            {'Content-Type': PROTO, 'Content-Encoding': 'gzip'}, gzip.compress(b'\x00' * (LIMIT * 50)),
            (413, 8, f'Request body is larger than {LIMIT} bytes once decompressed.'), id='gzip-bomb',
        ),
    ],
)  # fmt: skip
def test_bad_requests(
    server: ServerThread,
    client: httpx.Client,
    headers: dict[str, str],
    body: bytes,
    expected: tuple[int, int, str],
) -> None:
    reply = client.post('/v1/traces', content=body, headers=headers)
    assert status_of(reply) == expected
    # the server is still up and still stores what it is sent
    good = sample_body()
    assert client.post('/v1/traces', content=good, headers={'Content-Type': PROTO}).status_code == 200
    assert server.store is not None
    assert server.store.span_count() == 6


def test_too_large_without_content_length(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b'\x00' * 1024

    reply = client.post('/v1/traces', content=chunks(), headers={'Content-Type': PROTO})
    assert 'content-length' not in reply.request.headers
    assert status_of(reply) == (413, 8, f'Request body is larger than {LIMIT} bytes.')


def test_bad_metrics_body(client: httpx.Client) -> None:
    reply = client.post('/v1/metrics', content=b'\xff\xff', headers={'Content-Type': PROTO})
    assert status_of(reply) == (400, 3, 'Malformed protobuf body: it is not a valid ExportMetricsServiceRequest.')


def test_storage_failure_is_503_not_200(server: ServerThread, client: httpx.Client) -> None:
    assert server.store is not None
    server.store._con.execute('DROP TABLE spans')  # pyright: ignore[reportPrivateUsage]  # the fault
    reply = client.post('/v1/traces', content=sample_body(), headers={'Content-Type': PROTO})
    code, grpc_code, message = status_of(reply)
    assert (code, grpc_code) == (503, 14)
    assert message.startswith('Could not store the batch: CatalogException: ')


def test_wrong_method(client: httpx.Client) -> None:
    assert client.get('/v1/traces').status_code == 405


@pytest.mark.parametrize(
    ('path', 'expected'),
    [
        ('/api/runs?limit=0', "limit must be a whole number from 1 to 1000 in ASCII digits, got '0'."),
        ('/api/runs?limit=abc', "limit must be a whole number from 1 to 1000 in ASCII digits, got 'abc'."),
        (
            '/api/runs?before=yesterday',
            'before must be a duration back from now (30m, 6h, 7d, 2w) or an ISO 8601 timestamp: '
            "'yesterday' is neither a duration like 30m, 6h, 7d nor an ISO 8601 timestamp.",
        ),
        (
            '/api/graphs/g/nodes?since=soon',
            'since must be a duration back from now (30m, 6h, 7d, 2w) or an ISO 8601 timestamp: '
            "'soon' is neither a duration like 30m, 6h, 7d nor an ISO 8601 timestamp.",
        ),
    ],
)
def test_bad_api_parameters(client: httpx.Client, path: str, expected: str) -> None:
    reply = client.get(path)
    assert (reply.status_code, reply.json()) == (400, {'detail': expected})


def test_unknown_run_is_404(client: httpx.Client) -> None:
    reply = client.get('/api/runs/0123456789abcdef0123456789abcdef')
    assert (reply.status_code, reply.json()) == (
        404,
        {'detail': "No run found in trace '0123456789abcdef0123456789abcdef'."},
    )
    assert client.get('/runs/0123456789abcdef0123456789abcdef').status_code == 404


@pytest.fixture
def token_server() -> Iterator[ServerThread]:
    with running_server(token=TOKEN) as srv:
        yield srv


def test_token_guards_ingest(token_server: ServerThread) -> None:
    body = sample_body()
    with httpx.Client(base_url=token_server.url, timeout=10) as c:
        for headers in ({}, {'Authorization': 'Bearer wrong'}, {'Authorization': f'Basic {TOKEN}'}):
            reply = c.post('/v1/traces', content=body, headers={'Content-Type': PROTO, **headers})
            assert status_of(reply) == (401, 16, AUTH_MESSAGE)
            assert reply.headers['www-authenticate'] == 'Bearer'
        assert token_server.store is not None
        assert token_server.store.span_count() == 0
    # the real exporter with the token header gets through
    with exporting_provider(token_server.url, headers={'Authorization': f'Bearer {TOKEN}'}) as (provider, _):
        run = emit_run(provider)
    with exporting_provider(token_server.url) as (provider, _):
        emit_run(provider)  # no token: refused, nothing stored
    assert token_server.store.span_count() == 6
    with httpx.Client(base_url=token_server.url, timeout=10, headers={'Authorization': f'Bearer {TOKEN}'}) as c:
        assert [r['run_id'] for r in c.get('/api/runs').json()] == [run.run_id]


def test_token_guards_api_and_ui(token_server: ServerThread) -> None:
    with httpx.Client(base_url=token_server.url, timeout=10) as c:
        reply = c.get('/api/runs')
        assert (reply.status_code, reply.json()) == (401, {'detail': AUTH_MESSAGE})
        page = c.get('/graphs/g')
        assert page.status_code == 401
        assert '<h1>Sign in</h1>' in page.text
        assert '<input type="hidden" name="next" value="/graphs/g">' in page.text
        assert c.get('/healthz').text == 'ok'
        assert c.get('/static/dashboard.css').status_code == 200
        wrong = c.post('/login', data={'token': 'nope', 'next': '/'})
        assert wrong.status_code == 401
        assert '<p class="error">Wrong token.</p>' in wrong.text
        signed_in = c.post('/login', data={'token': TOKEN, 'next': '/graphs/g'})
        assert (signed_in.status_code, signed_in.headers['location']) == (303, '/graphs/g')
        assert 'httponly' in signed_in.headers['set-cookie'].lower()
        # the cookie now opens the UI and the API
        assert c.get('/').status_code == 200
        assert c.get('/graphs/g').status_code == 404  # signed in, the page answers: no graph g is stored yet
        assert c.get('/api/graphs').json() == []
    with httpx.Client(base_url=token_server.url, timeout=10, headers={'Authorization': f'Bearer {TOKEN}'}) as c:
        assert c.get('/').status_code == 200


def test_login_never_redirects_off_site(token_server: ServerThread) -> None:
    with httpx.Client(base_url=token_server.url, timeout=10) as c:
        reply = c.post('/login', data={'token': TOKEN, 'next': '//evil.example/'})
        assert reply.headers['location'] == '/'


def test_json_error_reply_for_json_requests(client: httpx.Client) -> None:
    reply = client.post('/v1/traces', content=b'{', headers={'Content-Type': 'application/json'})
    assert reply.headers['content-type'] == 'application/json'
    assert json.loads(reply.content)['code'] == 3
