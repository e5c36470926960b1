"""`tracegraph serve` under idle and slow clients, against a real server process: connections that send nothing are
closed within the header timeout, thousands of them do not keep `/healthz` or ingest from answering, and what the
server writes is private (reply headers, file modes)."""

from __future__ import annotations

import resource
import socket
import stat
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from serve_helpers import crafted_body, crafted_run, serve_process

from tracegraph.dashboard.server.connections import HEADER_TIMEOUT, KEEP_ALIVE_TIMEOUT

PROTO = {'Content-Type': 'application/x-protobuf'}
TOKEN = 'a-limits-token-of-24-chars'


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _closed_by_server(sock: socket.socket, within: float) -> float | None:
    """Seconds until the server closed `sock` (read end-of-file), None if it stayed open `within` seconds."""
    sock.settimeout(within)
    started = time.monotonic()
    try:
        data = sock.recv(1024)
    except TimeoutError:
        return None
    except ConnectionResetError:
        return time.monotonic() - started
    return time.monotonic() - started if data == b'' or b'HTTP/1.1' in data else None


def test_a_connection_that_sends_nothing_or_dribbles_headers_is_closed(tmp_path: Path) -> None:
    with serve_process(tmp_path, '--no-grpc', banner_lines=4) as s:
        address = _address(s.url)
        with socket.create_connection(address) as silent, socket.create_connection(address) as slow:
            slow.sendall(b'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n')  # and never the blank line
            assert (closed := _closed_by_server(silent, HEADER_TIMEOUT + 5)) is not None
            assert closed >= HEADER_TIMEOUT - 1
            assert _closed_by_server(slow, 5) is not None
        # After a reply, an idle keep-alive connection goes after the keep-alive timeout.
        with socket.create_connection(address) as kept:
            kept.sendall(b'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
            reply = b''
            while not reply.endswith(b'\r\n\r\nok'):  # headers, then the body `ok`
                reply += kept.recv(4096)
            assert reply.startswith(b'HTTP/1.1 200 OK')
            assert (idle := _closed_by_server(kept, KEEP_ALIVE_TIMEOUT + 5)) is not None
            assert idle <= KEEP_ALIVE_TIMEOUT + 2


def test_thousands_of_idle_connections_do_not_stop_health_or_ingest(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4000 if hard == resource.RLIM_INFINITY else min(hard, 4000)
    if wanted < 4000:
        pytest.skip(f'this process may open {hard} files, too few to hold 3,000 connections')
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    idle: list[socket.socket] = []
    try:
        # The server may open 2,048 files: 3,000 connections would exhaust them without its cap (1,408 here).
        with serve_process(tmp_path, '--no-grpc', banner_lines=4, max_open_files=2048) as s:
            address = _address(s.url)
            for _ in range(3000):  # beyond the cap: the longest idle ones are closed for new ones
                idle.append(socket.create_connection(address))
            with httpx.Client(base_url=s.url, timeout=1.0) as c:  # each must answer within a second
                for _ in range(20):
                    assert c.get('/healthz').text == 'ok'
                    assert c.post('/v1/traces', content=crafted_body(*crafted_run()), headers=PROTO).status_code == 200
            lines: list[str] = []
            while not s.lines.empty():
                lines.append(s.lines.get_nowait())
            assert s.proc.poll() is None
        cap_lines = [line for line in lines if 'connections open, the most it keeps' in line]
        # A line per episode, not per connection: the header timeout empties the server between some of them.
        assert 1 <= len(cap_lines) <= 3 and len(lines) < 20, lines
        assert not [line for line in lines if 'Traceback' in line or 'Too many open files' in line], lines
    finally:
        for sock in idle:
            sock.close()


def test_guarded_replies_are_not_cached_and_files_are_private(tmp_path: Path) -> None:
    with serve_process(tmp_path, '--no-grpc', '--token', TOKEN, banner_lines=4) as s, httpx.Client(base_url=s.url) as c:
        refused = c.get('/api/runs')
        allowed = c.get('/api/runs', headers={'Authorization': f'Bearer {TOKEN}'})
        page = c.get('/', headers={'Authorization': f'Bearer {TOKEN}'})
        assert c.post(
            '/v1/traces', content=crafted_body(*crafted_run()), headers={**PROTO, 'Authorization': f'Bearer {TOKEN}'}
        ).is_success
        for reply in (refused, allowed, page):
            assert reply.headers['cache-control'] == 'no-store', reply
        created = [p for p in (tmp_path / 'tracegraph').iterdir()]
        assert created
        for path in created:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode & 0o077 == 0, f'{path.name} is {mode:o}'
