"""`tracegraph serve` under hostile input, as a real process on an ephemeral loopback port: crafted query strings,
poison spans mixed with good ones, foreign Host headers, tokens, sessions and killed processes."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from serve_helpers import Served, crafted_body, crafted_run, serve_process, trace_of

from tracegraph.dashboard.auth import FAILURE_WINDOW, MAX_FAILURES
from tracegraph.dashboard.ingest.otlp import INGEST_NOTE
from tracegraph.dashboard.server.guards import CONTENT_SECURITY_POLICY
from tracegraph.dashboard.server.signin import SESSION_COOKIE, SESSION_SECONDS
from tracegraph.exporters.otlp.otlpjson import trace_request_to_json

PROTO = {'Content-Type': 'application/x-protobuf'}
TOKEN = 's3cret-token-of-24-chars'


@pytest.fixture(scope='module')
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_process(tmp_path_factory.mktemp('serve'), '--allowed-host', 'dash.internal', banner_lines=6) as s:
        assert s.banner[0].startswith('tracegraph dashboard'), s.banner
        yield s


@pytest.fixture
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as c:
        yield c
    assert served.proc.poll() is None, 'the server died'


# --- parameters -----------------------------------------------------------------------------------------------

BAD_PARAMS = [
    ('limit=²', 'limit'),
    ('limit=１０', 'limit'),
    ('limit=0', 'limit'),
    ('limit=1001', 'limit'),
    ('since=99999999999w', 'since'),
    ('since=100000000d', 'since'),
    ('since=999999999999999999999999d', 'since'),
    ('since=１h', 'since'),
    ('before=tomorrow', 'before'),
    ('before=9999999-01-01', 'before'),
    (f'graph={"x" * 1001}', 'graph'),
]
ROUTES = {
    '/': ('limit', 'since', 'before', 'graph'),
    '/api/runs': ('limit', 'since', 'before', 'graph'),
    '/api/graphs/g/nodes': ('since',),
    '/api/graphs/g/edges': ('since',),
    '/graphs/g': ('since',),
}


@pytest.mark.parametrize(('query', 'name'), BAD_PARAMS)
def test_bad_parameters_are_400_naming_them(client: httpx.Client, query: str, name: str) -> None:
    for path, takes in ROUTES.items():
        if name not in takes:
            continue
        reply = client.get(f'{path}?{query}')
        assert reply.status_code == 400, (path, query, reply.text[:200])
        if path.startswith('/api/'):
            assert reply.json()['detail'].startswith(f'{name} must be'), reply.text
        else:
            assert reply.headers['content-type'].startswith('text/html')
            assert f'{name} must be' in reply.text


@pytest.mark.parametrize('path', ['/api/runs/not-a-trace', '/runs/not-a-trace', f'/api/runs/{"0" * 31}g'])
def test_bad_trace_ids_are_400(client: httpx.Client, path: str) -> None:
    reply = client.get(path)
    assert reply.status_code == 400
    assert 'trace_id must be 32 hexadecimal digits' in reply.text


# --- span content ---------------------------------------------------------------------------------------------


def _partial(reply: httpx.Response) -> tuple[int, str]:
    assert reply.status_code == 200, reply.content
    answer = ExportTraceServiceResponse.FromString(reply.content)
    return answer.partial_success.rejected_spans, answer.partial_success.error_message


def _stored(client: httpx.Client, trace: str) -> dict[str, Any]:
    reply = client.get(f'/api/runs/{trace}')
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.mark.parametrize(
    ('poison', 'note'),
    [
        ({'step': 2**40}, "tracegraph.step '1099511627776' is not a 32-bit integer"),
        ({'kind': 200}, 'span kind 200 is not an OTLP SpanKind'),
        ({'start': 2**64 - 1}, 'start_time_unix_nano 18446744073709551615 is impossible'),
        ({'end': time.time_ns() * 10}, 'is more than a day ahead; stored as the start time'),
        ({'start': 2**63 - 10**12, 'end': 1}, 'is impossible; stored as the time received'),
    ],
)
def test_a_poison_span_never_costs_the_good_run_beside_it(
    client: httpx.Client, poison: dict[str, Any], note: str
) -> None:
    good, bad = crafted_run(), crafted_run(**poison)
    assert _partial(client.post('/v1/traces', content=crafted_body(*good, *bad), headers=PROTO)) == (0, '')
    assert [n['node_id'] for n in _stored(client, trace_of(good))['timeline']['nodes']] == ['N']
    stored = _stored(client, trace_of(bad))
    notes = [
        stored['run_span']['attributes'].get(INGEST_NOTE),
        stored['nodes'][0]['span']['attributes'].get(INGEST_NOTE),
    ]
    assert any(n and note in n for n in notes), notes
    runs = client.get('/api/runs?limit=1000').json()
    assert all(r['duration'] >= 0 for r in runs)
    assert max(r['start'] for r in runs) < '2027', 'a span from the far future went to the top of the list'
    assert client.get(f'/runs/{trace_of(bad)}').status_code == 200


def test_spans_with_invalid_ids_are_rejected_alone(client: httpx.Client) -> None:
    good = crafted_run()
    bad = Span(trace_id=b'\0' * 16, span_id=os.urandom(8), name='no trace id')
    rejected, message = _partial(client.post('/v1/traces', content=crafted_body(*good, bad), headers=PROTO))
    assert (rejected, message) == (1, "span 'no trace id' has an invalid trace or span id")
    assert _stored(client, trace_of(good))['timeline']['outcome'] == 'completed'


def test_an_unknown_outcome_is_shown_as_it_is_escaped(client: httpx.Client) -> None:
    spans = crafted_run(outcome='<b id="injected">done?</b>')
    client.post('/v1/traces', content=crafted_body(*spans), headers=PROTO).raise_for_status()
    assert _stored(client, trace_of(spans))['timeline']['outcome'] == '<b id="injected">done?</b>'
    page = client.get(f'/runs/{trace_of(spans)}')
    assert page.status_code == 200
    assert '&lt;b id=&quot;injected&quot;&gt;done?&lt;/b&gt;' in page.text
    assert '<b id="injected">' not in page.text


def test_deep_nesting_is_walked_without_recursion(client: httpx.Client) -> None:
    spans = crafted_run()
    parent, deep = spans[1], list[Span]()
    for i in range(1200):
        child = Span(
            trace_id=parent.trace_id,
            span_id=os.urandom(8),
            parent_span_id=(deep[-1] if deep else parent).span_id,
            name=f'level {i}',
            start_time_unix_nano=parent.start_time_unix_nano,
            end_time_unix_nano=parent.end_time_unix_nano,
        )
        deep.append(child)
    client.post('/v1/traces', content=crafted_body(*spans, *deep), headers=PROTO).raise_for_status()
    children = _stored(client, trace_of(spans))['nodes'][0]['children']
    assert [c['depth'] for c in children] == list(range(1, 1201))
    assert client.get(f'/runs/{trace_of(spans)}').status_code == 200


# --- access ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('path', ['/', '/api/runs', '/v1/traces', '/healthz'])
def test_a_foreign_host_is_refused(client: httpx.Client, path: str) -> None:
    """DNS rebinding: a page of attacker.example whose name now resolves to 127.0.0.1."""
    method = 'POST' if path == '/v1/traces' else 'GET'
    spans = crafted_run(graph='rebound')
    reply = client.request(
        method, path, content=crafted_body(*spans), headers={**PROTO, 'Host': 'attacker.example:4318'}
    )
    assert reply.status_code == 421
    assert "Host 'attacker.example:4318' is not one this server answers for" in reply.text
    assert client.get(f'/api/runs/{trace_of(spans)}').status_code == 404


@pytest.mark.parametrize(
    'host', ['localhost', 'LOCALHOST:1', 'app.localhost', '127.0.0.1:9', '[::1]:4318', 'dash.internal']
)
def test_own_hosts_are_answered(client: httpx.Client, host: str) -> None:
    assert client.get('/api/runs?limit=1', headers={'Host': host}).status_code == 200


def test_pages_carry_security_headers(client: httpx.Client) -> None:
    for path in ('/', '/api/runs', '/graphs/g', '/nothing-here'):
        headers = client.get(path).headers
        assert headers['content-security-policy'] == CONTENT_SECURITY_POLICY
        assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
        assert headers['x-content-type-options'] == 'nosniff'
        assert headers['x-frame-options'] == 'DENY'
        assert headers['referrer-policy'] == 'no-referrer'


def test_favicon(client: httpx.Client) -> None:
    reply = client.get('/favicon.ico')
    assert (reply.status_code, reply.headers['content-type']) == (200, 'image/svg+xml')
    assert reply.content.startswith(b'<svg')
    assert '<link rel="icon" href="/favicon.ico"' in client.get('/').text


@pytest.mark.parametrize('how', ['option', 'environment', 'spaces'])
def test_an_empty_token_is_refused_at_start(tmp_path: Path, how: str) -> None:
    args, env = [], {**os.environ, 'XDG_DATA_HOME': str(tmp_path), 'COLUMNS': '250'}
    if how == 'environment':
        env['TRACEGRAPH_TOKEN'] = ''
    else:
        args = ['--token', '' if how == 'option' else '   ']
    result = subprocess.run(
        [sys.executable, '-m', 'tracegraph.cli', 'serve', '--port', '0', *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        'error: The token is empty: give a non-empty --token (or TRACEGRAPH_TOKEN), or unset it to serve without auth.'
    )


@pytest.fixture(scope='module')
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_process(tmp_path_factory.mktemp('guarded'), '--token', TOKEN) as s:
        assert s.banner[4] == '  auth       on: Authorization: Bearer <token>, or sign in at /login', s.banner
        yield s


def _sign_in(c: httpx.Client, next_path: str = '/') -> httpx.Response:
    return c.post('/login', data={'token': TOKEN, 'next': next_path})


def test_the_cookie_is_a_session_not_the_token(guarded: Served) -> None:
    with httpx.Client(base_url=guarded.url, timeout=10) as c:
        login = c.get('/?graph=shop&limit=5')
        assert login.status_code == 401
        assert 'name="next" value="/?graph=shop&amp;limit=5"' in login.text  # the query string survives login
        reply = _sign_in(c, '/?graph=shop&limit=5')
        assert (reply.status_code, reply.headers['location']) == (303, '/?graph=shop&limit=5')
        cookie = reply.headers['set-cookie']
        session = c.cookies[SESSION_COOKIE]
        assert TOKEN not in cookie and len(session) >= 40
        assert f'Max-Age={SESSION_SECONDS}' in cookie and 'HttpOnly' in cookie and 'SameSite=strict' in cookie
        assert 'Secure' not in cookie  # plain HTTP on loopback; set over TLS (see test below)
        page = c.get('/')
        assert page.status_code == 200 and '<a href="/logout">Sign out</a>' in page.text
        assert c.get('/logout').status_code == 303
    with httpx.Client(base_url=guarded.url, timeout=10, cookies={SESSION_COOKIE: session}) as stale:
        assert stale.get('/api/runs').status_code == 401  # the session ended at logout
    with httpx.Client(base_url=guarded.url, timeout=10, cookies={'tracegraph_token': TOKEN}) as old:
        assert old.get('/api/runs').status_code == 401  # the raw token is no longer a cookie


def test_the_session_cookie_is_secure_over_tls() -> None:
    from tracegraph.dashboard.server.app import ServeOptions, create_app
    from tracegraph.dashboard.store.database import Store

    async def sign_in(store: Store) -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(store, ServeOptions(token=TOKEN)))
        async with httpx.AsyncClient(transport=transport, base_url='https://127.0.0.1') as c:
            return await c.post('/login', data={'token': TOKEN, 'next': '/'})

    with Store(':memory:') as store:
        reply = asyncio.run(sign_in(store))
    assert reply.status_code == 303 and 'Secure' in reply.headers['set-cookie']


def test_wrong_tokens_are_limited_but_the_right_one_always_gets_in(tmp_path: Path) -> None:
    with (
        serve_process(tmp_path, '--token', TOKEN) as s,
        httpx.Client(base_url=s.url, timeout=10) as c,
        httpx.Client(base_url=s.url, timeout=10) as signed_in,
    ):
        assert _sign_in(signed_in).status_code == 303
        for _ in range(MAX_FAILURES - 1):
            assert c.post('/login', data={'token': 'guess'}).status_code == 401
        limited = c.get('/api/runs', headers={'Authorization': 'Bearer guess'})  # the limit's wrong token
        assert limited.status_code == 429 and 0 < int(limited.headers['retry-after']) <= FAILURE_WINDOW
        assert 'Too many wrong tokens' in limited.text
        # A proxy header names another address: not believed unless --forwarded-allow-ips says so.
        spoofed = [
            c.get('/api/runs', headers={'Authorization': f'Bearer guess{i}', 'X-Forwarded-For': f'10.0.0.{i}'})
            for i in range(20)
        ]
        assert {r.status_code for r in spoofed} == {429}
        # The right token, from the same address, gets in at once: the API, ingest and the login form.
        assert c.get('/api/runs', headers={'Authorization': f'Bearer {TOKEN}'}).status_code == 200
        ingest = c.post(
            '/v1/traces', content=crafted_body(*crafted_run()), headers={**PROTO, 'Authorization': f'Bearer {TOKEN}'}
        )
        assert ingest.status_code == 200
        assert _sign_in(c).status_code == 303
        assert signed_in.get('/api/runs').status_code == 200  # a session signed in before goes on
        lines = _drain(s)
    # One line in the log for the episode, not one per wrong token.
    assert len([line for line in lines if 'wrong tokens in 60 s from 127.0.0.1' in line]) == 1, lines


def _drain(s: Served) -> list[str]:
    found: list[str] = []
    while not s.lines.empty():
        found.append(s.lines.get_nowait())
    return found


# --- processes ------------------------------------------------------------------------------------------------


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f'/proc/{pid}/task').iterdir():
        text = (task / 'children').read_text().split()
        found.update(int(p) for p in text)
    return found | {g for c in found for g in _children_safe(c)}


def _children_safe(pid: int) -> set[int]:
    try:
        return _children(pid)
    except OSError:
        return set()


def _alive(pid: int) -> bool:
    try:
        state = Path(f'/proc/{pid}/stat').read_text().split(') ', 1)[1][0]
    except OSError:
        return False
    return state != 'Z'


@pytest.mark.skipif(not Path('/proc/self/task').exists(), reason='reads process trees from /proc (Linux)')
def test_decode_workers_die_with_a_killed_server(tmp_path: Path) -> None:
    with serve_process(tmp_path, '--decode-workers', '2') as s:
        big = crafted_run(nodes=400)
        with httpx.Client(base_url=s.url, timeout=30) as c:
            c.post(
                '/v1/traces', content=crafted_body(*big), headers=PROTO
            ).raise_for_status()  # > 32 KiB: decoded by a worker
        deadline = time.monotonic() + 30
        while len(_children(s.proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        children = _children(s.proc.pid)
        assert len(children) >= 2, children
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait(10)
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in children if _alive(p)], 'processes of the killed server live on'
    with serve_process(tmp_path, '--decode-workers', '2') as again, httpx.Client(base_url=again.url) as c:
        assert _stored(c, trace_of(big))['timeline']['outcome'] == 'completed'  # the restart needed nothing cleaned


def test_health_and_ingest_answer_while_a_big_run_renders(client: httpx.Client, served: Served) -> None:
    spans = crafted_run(nodes=10_000)
    for i in range(0, len(spans), 2000):
        client.post('/v1/traces', content=crafted_body(*spans[i : i + 2000]), headers=PROTO).raise_for_status()
    finished: list[str] = []

    def load_page() -> None:
        with httpx.Client(base_url=served.url, timeout=120) as c:
            # the whole run as JSON: every span's attributes parsed and serialised, seconds of Python work
            assert c.get(f'/api/runs/{trace_of(spans)}').status_code == 200
        finished.append('page')

    loader = threading.Thread(target=load_page)
    loader.start()
    time.sleep(0.2)  # the page request is in
    for _ in range(5):
        assert client.get('/healthz').status_code == 200
        client.post('/v1/traces', content=crafted_body(*crafted_run()), headers=PROTO).raise_for_status()
        if finished:
            break
        finished.append('health')
    loader.join(120)
    # answered while the page was still being rendered: rendering does not hold the event loop
    assert finished[0] == 'health', finished
    assert json.loads(client.get('/api/runs?limit=1').text)


# --- fuzzing --------------------------------------------------------------------------------------------------

FUZZ_SEED = int(os.environ.get('TRACEGRAPH_FUZZ_SEED', '20261201'))
FUZZ_BODIES = int(os.environ.get('TRACEGRAPH_FUZZ_BODIES', '3000'))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _deep_protobuf(depth: int) -> bytes:
    """A request whose one attribute is an array nested `depth` deep (written by hand: protobuf cannot build it)."""
    value = _field(1, b'leaf')  # AnyValue.string_value
    for _ in range(depth):
        value = _field(5, _field(1, value))  # AnyValue.array_value -> ArrayValue.values
    span = crafted_run()[0].SerializeToString() + _field(9, _field(1, b'deep') + _field(2, value))
    return _field(1, _field(2, _field(2, span)))


def _deep_json(depth: int) -> bytes:
    value = '{"stringValue": "leaf"}'
    for _ in range(depth):
        value = f'{{"arrayValue": {{"values": [{value}]}}}}'
    run = crafted_run()[0]
    span = json.dumps({'traceId': run.trace_id.hex(), 'spanId': run.span_id.hex(), 'name': 'd'})
    span = span[:-1] + f', "attributes": [{{"key": "deep", "value": {value}}}]}}'
    return f'{{"resourceSpans": [{{"scopeSpans": [{{"spans": [{span}]}}]}}]}}'.encode()


def _json_of(spans: list[Any]) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.extend(spans)
    return json.dumps(trace_request_to_json(request)).encode()


def _weird_json_value(rng: random.Random) -> Any:
    values: list[Any] = [
        None,
        True,
        -1,
        2**64,
        1e308,
        'NaN',
        '\ud800',
        'ÿ' * 1000,
        [],
        {},
        [[[]]],
        {'a': {'b': {}}},
        '0' * 40,
    ]
    return rng.choice(values)


def _mutate_json(data: Any, rng: random.Random) -> Any:
    """`data` with one value somewhere replaced by something of another type or range."""
    if isinstance(data, dict) and data:
        mapping = cast(dict[str, Any], data)
        key = rng.choice(list(mapping))
        mapping[key] = _mutate_json(mapping[key], rng) if rng.random() < 0.7 else _weird_json_value(rng)
        return mapping
    if isinstance(data, list) and data:
        items = cast(list[Any], data)
        i = rng.randrange(len(items))
        items[i] = _mutate_json(items[i], rng) if rng.random() < 0.7 else _weird_json_value(rng)
        return items
    return _weird_json_value(rng)


def _mutate_bytes(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 8)):
        choice = rng.random()
        if choice < 0.4 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.6:
            data[rng.randrange(len(data) + 1) : 0] = rng.randbytes(rng.randint(1, 16))
        elif choice < 0.8 and data:
            del data[rng.randrange(len(data)) :]
        else:
            start = rng.randrange(len(data) + 1)
            data[start:start] = data[start : start + rng.randint(1, 64)]
    return bytes(data)


def _fuzz_requests(rng: random.Random, count: int) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    json_headers = {'Content-Type': 'application/json'}
    special: list[tuple[str, bytes, dict[str, str]]] = [
        ('gzip bomb', gzip.compress(b'\0' * (64 * 1024 * 1024), 9), {**PROTO, 'Content-Encoding': 'gzip'}),
        ('truncated gzip', gzip.compress(crafted_body(*crafted_run()))[:-9], {**PROTO, 'Content-Encoding': 'gzip'}),
        ('deep protobuf', _deep_protobuf(5000), PROTO),
        ('deep json', _deep_json(5000), json_headers),
        ('huge attribute', crafted_body(*crafted_run(graph='x' * 4_000_000)), PROTO),
        (
            'invalid utf-8 name',
            crafted_body(*crafted_run(graph='GRAPH')).replace(b'GRAPH', b'\xff\xfe\xfd\xff\xc0'),
            PROTO,
        ),
        ('invalid utf-8 json', b'{"resourceSpans": [{"x": "\xff\xfe"}]}', json_headers),
        ('no content type', crafted_body(*crafted_run()), {}),
        ('odd encoding', crafted_body(*crafted_run()), {**PROTO, 'Content-Encoding': 'br'}),
    ]
    yield from special
    for i in range(count - len(special)):
        spans = crafted_run(nodes=rng.randint(1, 4), outcome=rng.choice(['completed', 'failed', '<i>?</i>']))
        if i % 2:
            yield f'protobuf #{i}', _mutate_bytes(crafted_body(*spans), rng), PROTO
        elif i % 4 == 0:
            text = _json_of(spans)
            yield f'json bytes #{i}', _mutate_bytes(text, rng), json_headers
        else:
            data = _mutate_json(json.loads(_json_of(spans)), rng)
            yield f'json structure #{i}', json.dumps(data).encode('utf-8', 'surrogatepass'), json_headers


def test_fuzzed_bodies_never_get_a_5xx(client: httpx.Client, served: Served) -> None:
    rng = random.Random(FUZZ_SEED)
    failures: list[str] = []
    statuses: dict[int, int] = {}
    for label, content, headers in _fuzz_requests(rng, FUZZ_BODIES):
        reply = client.post('/v1/traces', content=content, headers=headers)
        statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
        if reply.status_code >= 500:
            failures.append(f'{label}: {reply.status_code} {reply.text[:200]}')
    assert not failures, f'seed {FUZZ_SEED} (rerun with TRACEGRAPH_FUZZ_SEED={FUZZ_SEED}): {failures[:5]}'
    assert served.proc.poll() is None
    assert client.get('/healthz').text == 'ok'
    good = crafted_run()
    client.post('/v1/traces', content=crafted_body(*good), headers=PROTO).raise_for_status()
    assert client.get(f'/api/runs/{trace_of(good)}').status_code == 200
    assert statuses.get(200, 0) > FUZZ_BODIES // 20 and statuses.get(400, 0) > FUZZ_BODIES // 10, statuses  # both paths
