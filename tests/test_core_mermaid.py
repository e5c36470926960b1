"""Mermaid diagrams: code options, and images fetched over HTTP from a mermaid.ink-like service on loopback."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs, urlparse

import pytest
from inline_snapshot import snapshot

from tracegraph import BaseNode, Edge, End, Graph, GraphRunContext


@dataclass
class Ask(BaseNode[None, None, str]):
    """Ask the question."""

    docstring_notes = True

    async def run(self, ctx: GraphRunContext) -> Annotated[Answer, Edge(label='ask')]:
        return Answer()


@dataclass
class Answer(BaseNode[None, None, str]):
    async def run(self, ctx: GraphRunContext) -> Annotated[Ask, Edge(label='retry')] | Annotated[End[str], Edge('ok')]:
        return End('42')


quiz = Graph(nodes=[Ask, Answer])


def test_mermaid_code_options() -> None:
    assert quiz.mermaid_code(start_node=Ask, highlighted_nodes=[Answer]) == snapshot("""\
---
title: quiz
---
stateDiagram-v2
  [*] --> Ask
  Ask --> Answer: ask
  note right of Ask
    Ask the question.
  end note
  Answer --> Ask: retry
  Answer --> [*]: ok

classDef highlighted fill:#fdff32
class Answer highlighted\
""")
    assert quiz.mermaid_code(title=False, edge_labels=False, notes=False) == snapshot("""\
stateDiagram-v2
  Ask --> Answer
  Answer --> Ask
  Answer --> [*]\
""")


def test_mermaid_code_unknown_nodes() -> None:
    with pytest.raises(LookupError, match='Start node "Nope" is not in the graph.'):
        quiz.mermaid_code(start_node='Nope')
    with pytest.raises(LookupError, match='Highlighted node "Nope" is not in the graph.'):
        quiz.mermaid_code(highlighted_nodes='Nope')


@pytest.fixture
def mermaid_ink() -> Iterator[tuple[str, list[tuple[str, dict[str, list[str]]]]]]:
    """A loopback stand-in for mermaid.ink that records each request and answers with fake image bytes."""
    requests: list[tuple[str, dict[str, list[str]]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            requests.append((url.path, parse_qs(url.query, keep_blank_values=True)))
            status, body = (500, b'render failed') if 'fail' in url.query else (200, b'IMAGE:' + url.path.encode())
            self.send_response(status)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.server_address[1]}', requests
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_mermaid_image_and_save(
    mermaid_ink: tuple[str, list[tuple[str, dict[str, list[str]]]]], tmp_path: Path
) -> None:
    base_url, requests = mermaid_ink
    image = quiz.mermaid_image(base_url=base_url)
    path, params = requests[-1]
    assert path.startswith('/img/')
    assert base64.b64decode(path.removeprefix('/img/')).decode() == quiz.mermaid_code()
    assert params == {}  # the default (jpeg) sends no `type`, as the classic engine does
    assert image == b'IMAGE:' + path.encode()

    quiz.mermaid_image(base_url=base_url, image_type='jpeg')
    assert requests[-1][1] == {'type': ['jpeg']}
    quiz.mermaid_image(
        base_url=base_url, image_type='png', theme='dark', background_color='!white', width=300, height=200, scale=2
    )
    assert requests[-1][1] == {
        'type': ['png'],
        'bgColor': ['!white'],
        'theme': ['dark'],
        'width': ['300'],
        'height': ['200'],
        'scale': ['2'],
    }
    quiz.mermaid_image(base_url=base_url, image_type='webp', scale=1.5)  # sent as given: the service judges it
    assert requests[-1][1] == {'type': ['webp'], 'scale': ['1.5']}

    quiz.mermaid_save(tmp_path / 'quiz.svg', base_url=base_url)
    assert requests[-1][0].startswith('/svg/') and requests[-1][1] == {}
    assert (tmp_path / 'quiz.svg').read_bytes().startswith(b'IMAGE:/svg/')
    quiz.mermaid_save(tmp_path / 'quiz.jpg', base_url=base_url)
    assert requests[-1][0].startswith('/img/') and requests[-1][1] == {}
    quiz.mermaid_save(tmp_path / 'quiz.png', base_url=base_url)
    assert requests[-1][1] == {'type': ['png']}

    quiz.mermaid_save(tmp_path / 'quiz.pdf', base_url=base_url, pdf_fit=True, pdf_landscape=True, pdf_paper='a4')
    assert requests[-1][0].startswith('/pdf/') and requests[-1][1] == {'fit': [''], 'landscape': [''], 'paper': ['a4']}


def test_mermaid_image_errors(mermaid_ink: tuple[str, list[tuple[str, dict[str, list[str]]]]]) -> None:
    import httpx

    base_url, _ = mermaid_ink
    with pytest.raises(httpx.HTTPStatusError) as exc_info:
        quiz.mermaid_image(base_url=base_url, background_color='fail')
    assert str(exc_info.value) == '500 error generating image:\nrender failed'  # the classic message
    assert exc_info.value.response.status_code == 500

    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(('127.0.0.1', 0))
        closed = f'http://127.0.0.1:{s.getsockname()[1]}'
    with pytest.raises(httpx.ConnectError, match=rf'^Could not reach the mermaid.ink service at {closed}: '):
        quiz.mermaid_image(base_url=closed)
