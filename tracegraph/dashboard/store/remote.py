"""A running dashboard's store read through its JSON API: what `tracegraph report` needs when `serve` holds the file.

`RemoteStore` answers the same calls as `Store` for the report (`graphs`, `run_totals`, `node_stats`, `runs`),
with the same models, by asking the server; it uses the standard library only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Any

from .models import GraphSummary, NodeStats, RunSummary

__all__ = ('RemoteStore', 'RemoteStoreError')


class RemoteStoreError(RuntimeError):
    """The server did not answer, or answered an error; the message names the URL and the reason."""


class RemoteStore:
    """The store of the dashboard at `url`, read through its JSON API (`token` when it has one)."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip('/')
        self.token = token
        self.timeout = timeout

    def _get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f'{self.url}{path}' + (f'?{query}' if query else '')
        request = urllib.request.Request(url, headers={'Accept': 'application/json'})
        if self.token:
            request.add_header('Authorization', f'Bearer {self.token}')
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            raise RemoteStoreError(f'{url} answered {exc.code}: {exc.read().decode(errors="replace")[:200]}') from None
        except (urllib.error.URLError, OSError) as exc:
            raise RemoteStoreError(f'cannot read {url}: {getattr(exc, "reason", exc)}') from None

    @staticmethod
    def _since(since: datetime | None) -> str | None:
        return since.isoformat() if since else None

    def graphs(self) -> list[GraphSummary]:
        """Every graph with runs stored."""
        return [GraphSummary.model_validate(g) for g in self._get('/api/graphs')]

    def run_totals(self, graph: str, *, since: datetime | None = None) -> tuple[int, int, float]:
        """Of the runs of `graph` started since `since`: how many, how many failed, and their summed seconds."""
        data = self._get(f'/api/graphs/{urllib.parse.quote(graph, safe="")}/totals', since=self._since(since))
        return int(data['runs']), int(data['failed']), float(data['total'])

    def node_stats(self, graph: str, *, since: datetime | None = None) -> list[NodeStats]:
        """Per node of `graph`: step count, error rate and duration percentiles."""
        path = f'/api/graphs/{urllib.parse.quote(graph, safe="")}/nodes'
        return [NodeStats.model_validate(n) for n in self._get(path, since=self._since(since))]

    def runs(
        self, *, graph: str | None = None, since: datetime | None = None, limit: int = 50, sort: str = 'start'
    ) -> list[RunSummary]:
        """The first page of runs, newest (or, `sort='duration'`, longest) first."""
        rows = self._get('/api/runs', graph=graph, since=self._since(since), limit=limit, sort=sort, kind='run')
        return [RunSummary.model_validate(r) for r in rows]

    def close(self) -> None:
        """Nothing to close (for symmetry with `Store`)."""
