"""Mermaid `stateDiagram-v2` diagrams of a graph, and images of them rendered by the mermaid.ink service."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from textwrap import indent
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from typing_extensions import TypedDict, Unpack

from .nodes import BaseNode

if TYPE_CHECKING:
    import httpx

    from .graph import Graph

__all__ = (
    'NodeIdent',
    'DEFAULT_HIGHLIGHT_CSS',
    'StateDiagramDirection',
    'generate_code',
    'MermaidConfig',
    'request_image',
    'save_image',
)

DEFAULT_HIGHLIGHT_CSS = 'fill:#fdff32'
"""CSS of highlighted nodes."""
DEFAULT_MERMAID_INK_URL = 'https://mermaid.ink'

StateDiagramDirection = Literal['TB', 'LR', 'RL', 'BT']
"""Direction of flow: top to bottom (mermaid's default), left to right, right to left, bottom to top."""

NodeIdent: TypeAlias = 'type[BaseNode[Any, Any, Any]] | BaseNode[Any, Any, Any] | str'
"""A node named by its class, an instance of it, or its id."""


def generate_code(
    graph: Graph[Any, Any, Any],
    /,
    *,
    start_node: Sequence[NodeIdent] | NodeIdent | None = None,
    highlighted_nodes: Sequence[NodeIdent] | NodeIdent | None = None,
    highlight_css: str = DEFAULT_HIGHLIGHT_CSS,
    title: str | None = None,
    edge_labels: bool = True,
    notes: bool = True,
    direction: StateDiagramDirection | None = None,
) -> str:
    """The mermaid `stateDiagram-v2` code of `graph`.

    Raises:
        LookupError: when a start or highlighted node is not in the graph.
    """
    start_ids = set(_node_ids(start_node))
    for node_id in start_ids:
        if node_id not in graph.node_defs:
            raise LookupError(f'Start node "{node_id}" is not in the graph.')

    lines = ['---', f'title: {title}', '---'] if title else []
    lines.append('stateDiagram-v2')
    if direction is not None:
        lines.append(f'  direction {direction}')
    for node_id, node_def in graph.node_defs.items():
        if node_id in start_ids:
            lines.append(f'  [*] --> {node_id}')
        if node_def.returns_base_node:
            lines.extend(f'  {node_id} --> {next_id}' for next_id in graph.node_defs)
        else:
            for next_id, edge in node_def.next_node_edges.items():
                label = f': {edge.label}' if edge_labels and edge.label else ''
                lines.append(f'  {node_id} --> {next_id}{label}')
        if node_def.end_edge is not None:
            label = f': {node_def.end_edge.label}' if edge_labels and node_def.end_edge.label else ''
            lines.append(f'  {node_id} --> [*]{label}')
        if notes and node_def.note:
            lines.append(f'  note right of {node_id}')
            # mermaid shows an error for blank lines inside a note
            lines.append(indent(re.sub('\n{2,}', '\n', node_def.note), '    '))
            lines.append('  end note')

    highlighted = list(_node_ids(highlighted_nodes))
    if highlighted:
        lines += ['', f'classDef highlighted {highlight_css}']
        for node_id in highlighted:
            if node_id not in graph.node_defs:
                raise LookupError(f'Highlighted node "{node_id}" is not in the graph.')
            lines.append(f'class {node_id} highlighted')
    return '\n'.join(lines)


def _node_ids(idents: Sequence[NodeIdent] | NodeIdent | None) -> Iterator[str]:
    if idents is None:
        return
    items: Sequence[Any] = idents if isinstance(idents, Sequence) and not isinstance(idents, str) else (idents,)
    for item in items:
        yield item if isinstance(item, str) else item.get_id()


class MermaidConfig(TypedDict, total=False):
    """Options of an image rendered by mermaid.ink; all optional."""

    start_node: Sequence[NodeIdent] | NodeIdent
    """Nodes the diagram starts at."""
    highlighted_nodes: Sequence[NodeIdent] | NodeIdent
    """Nodes to highlight."""
    highlight_css: str
    """CSS of highlighted nodes."""
    title: str | None
    """Diagram title."""
    edge_labels: bool
    """Show edge labels (default true)."""
    notes: bool
    """Show notes (default true)."""
    image_type: Literal['jpeg', 'png', 'webp', 'svg', 'pdf']
    """Image format (default jpeg, mermaid.ink's own default)."""
    pdf_fit: bool
    """PDF only: fit the page to the diagram."""
    pdf_landscape: bool
    """PDF only: landscape page (ignored with `pdf_fit`)."""
    pdf_paper: Literal['letter', 'legal', 'tabloid', 'ledger', 'a0', 'a1', 'a2', 'a3', 'a4', 'a5', 'a6']
    """PDF only: paper size."""
    background_color: str
    """Background colour: a hex code (`FF0000`) or a named colour (`!white`)."""
    theme: Literal['default', 'neutral', 'dark', 'forest']
    """Mermaid theme."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    scale: float
    """Scale factor from 1 to 3; mermaid.ink accepts it only with `width` or `height`."""
    direction: StateDiagramDirection
    """Direction of flow."""
    httpx_client: httpx.Client
    """Client to make the request with."""
    base_url: str
    """Where the mermaid.ink service is (default `https://mermaid.ink`)."""


def request_image(graph: Graph[Any, Any, Any], /, **kwargs: Unpack[MermaidConfig]) -> bytes:
    """Render the diagram of `graph` as an image through the mermaid.ink service.

    Raises:
        ImportError: when httpx (the `mermaid` extra) is not installed.
        httpx.HTTPStatusError: when the service answers with an error (`{status} error generating image:\n{body}`).
        httpx.TransportError: when the service cannot be reached (the same class httpx raised, naming the address).
    """
    try:
        import httpx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            'Rendering mermaid images needs httpx: install it with `pip install "tracegraph[mermaid]"`.'
        ) from e

    code = generate_code(
        graph,
        start_node=kwargs.get('start_node'),
        highlighted_nodes=kwargs.get('highlighted_nodes'),
        highlight_css=kwargs.get('highlight_css', DEFAULT_HIGHLIGHT_CSS),
        title=kwargs.get('title'),
        edge_labels=kwargs.get('edge_labels', True),
        notes=kwargs.get('notes', True),
        direction=kwargs.get('direction'),
    )
    encoded = base64.b64encode(code.encode()).decode('ascii')
    image_type = kwargs.get('image_type')
    base_url = kwargs.get('base_url', DEFAULT_MERMAID_INK_URL).rstrip('/')
    if image_type == 'pdf':
        url = f'{base_url}/pdf/{encoded}'
    elif image_type == 'svg':
        url = f'{base_url}/svg/{encoded}'
    else:
        url = f'{base_url}/img/{encoded}'
    params = _image_params(kwargs)

    client = kwargs.get('httpx_client') or httpx.Client()
    try:
        response = client.get(url, params=params, timeout=30)
    except httpx.TransportError as e:
        # The same exception type, so `except httpx.ConnectError` keeps working, with the address in the message.
        raise type(e)(f'Could not reach the mermaid.ink service at {base_url}: {e}', request=e.request) from e
    finally:
        if 'httpx_client' not in kwargs:
            client.close()
    if not response.is_success:
        raise httpx.HTTPStatusError(
            f'{response.status_code} error generating image:\n{response.text}',
            request=response.request,
            response=response,
        )
    return response.content


def _image_params(config: MermaidConfig) -> dict[str, str | float]:
    """The query string mermaid.ink reads, with the keys and values the classic pydantic_graph sends."""
    params: dict[str, str | float] = {}
    image_type = config.get('image_type')
    if image_type == 'pdf':
        if config.get('pdf_fit'):
            params['fit'] = ''
        if config.get('pdf_landscape'):
            params['landscape'] = ''
        if paper := config.get('pdf_paper'):
            params['paper'] = paper
    elif image_type is not None and image_type != 'svg':
        # Only an explicit type is sent: without one mermaid.ink renders its default, jpeg.
        params['type'] = image_type
    if background := config.get('background_color'):
        params['bgColor'] = background
    if theme := config.get('theme'):
        params['theme'] = theme
    if width := config.get('width'):
        params['width'] = width
    if height := config.get('height'):
        params['height'] = height
    if scale := config.get('scale'):
        params['scale'] = scale
    return params


def save_image(path: Path | str, graph: Graph[Any, Any, Any], /, **kwargs: Unpack[MermaidConfig]) -> None:
    """Render the diagram of `graph` with `request_image` and write it to `path`.

    The image type is taken from the file's suffix (`.png`, `.svg`, `.pdf`, ...) unless `image_type` is given.
    """
    path = Path(path)
    if 'image_type' not in kwargs:
        suffix = path.suffix.lower().lstrip('.')
        # `.jpg` / `.jpeg` need no type: jpeg is the service's default, and the classic engine sends none for them.
        if suffix in ('png', 'webp', 'svg', 'pdf'):
            kwargs['image_type'] = suffix
    path.write_bytes(request_image(graph, **kwargs))
