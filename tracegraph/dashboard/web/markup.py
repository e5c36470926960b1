"""The HTML every page shares: the page around a body, outcome badges, times and links to runs and graphs."""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape
from urllib.parse import quote, urlencode

from starlette.responses import HTMLResponse

from ...presentation.html import OUTCOME_COLOURS
from ..store.runoutline import WINDOW

__all__ = ('badge', 'graph_href', 'layout', 'live_control', 'run_href', 'step_href', 'time_text', 'trace_href')


def layout(title: str, body: str, *, status: int = 200, sign_out: bool = False) -> HTMLResponse:
    """A full page around `body`; `sign_out` adds the sign-out link (when the server has a token)."""
    nav = '<a href="/">Runs</a>' + ('<a href="/logout">Sign out</a>' if sign_out else '')
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)} · tracegraph</title><link rel="icon" href="/favicon.ico" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/dashboard.css">'
        f'</head><body><header><a class="brand" href="/">tracegraph</a><nav>{nav}</nav></header>'
        f'<main>{body}</main><script src="/static/dashboard.js"></script>'
        '<script src="/static/timeline.js"></script></body></html>'
    )
    return HTMLResponse(html, status_code=status)


def live_control() -> str:
    """The pause/resume button and status of a page that updates itself (the element marked `data-live`)."""
    return (
        '<div class="live"><button type="button" id="live-toggle" aria-pressed="false">Pause updates</button>'
        '<span id="live-state" role="status">updating every 2 s</span></div>'
    )


def badge(outcome: str) -> str:
    """The outcome as a coloured label (the text says it: colour is never the only cue)."""
    colour = OUTCOME_COLOURS.get(outcome, '#6b6b6b')
    return f'<span class="badge" style="background:{colour}">{escape(outcome)}</span>'


def time_text(value: datetime) -> str:
    """An instant as `YYYY-MM-DD HH:MM:SS.mmm` in UTC."""
    return value.astimezone(timezone.utc).strftime('%Y-%m-%d %H:%M:%S.%f')[:23]


def run_href(trace_id: str, run_id: str) -> str:
    """The page of one run."""
    return f'/runs/{quote(trace_id)}?run_id={quote(run_id)}'


def step_href(
    trace_id: str, run_id: str, total_steps: int, index: int, span_id: str, *, shown: tuple[int, int] | None = None
) -> str:
    """A link to step `index` (0-based, of a run of `total_steps`) with its detail open: in the window `shown`
    (first, last) when it holds the step, else in a window of `WINDOW` steps around it."""
    if shown is not None and shown[0] <= index <= shown[1]:
        first, last = shown
    else:
        first = max(0, min(index - WINDOW // 2, total_steps - WINDOW))
        last = min(total_steps - 1, first + WINDOW - 1)
    if total_steps <= WINDOW:
        base = run_href(trace_id, run_id)
    else:
        base = f'/runs/{quote(trace_id)}?{urlencode({"run_id": run_id, "steps": f"{first + 1}-{last + 1}"})}'
    return f'{base}#span={span_id}'


def trace_href(trace_id: str) -> str:
    """The span tree of a trace that holds no graph run."""
    return f'/traces/{quote(trace_id)}'


def graph_href(graph: str) -> str:
    """The page of one graph."""
    return f'/graphs/{quote(graph, safe="")}'
