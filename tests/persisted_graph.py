"""A graph run with `FileStatePersistence` across processes by the persistence tests (`python persisted_graph.py ...`).

    start FILE SPANS         run the first two steps, then leave the run (interrupted, waiting for a review)
    resume FILE SPANS [join] finish the run with `iter_from_persistence` (`join`: `join_trace=True`)
    hammer FILE N TAG        append N node snapshots to FILE (concurrent-writer test)

Spans go to the JSON Lines file SPANS through a real SDK pipeline; the last stdout line is a JSON summary.
`traced_articles` and `in_three_parts` are for the dashboard tests, in process.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider

from tracegraph import BaseNode, End, FullStatePersistence, Graph, GraphRunContext
from tracegraph.persistence.file import FileStatePersistence
from tracegraph.tracing.instrumentation_settings import InstrumentationSettings


@dataclass
class Article:
    title: str
    edits: list[str] = field(default_factory=list[str])


@dataclass
class Draft(BaseNode[Article, None, str]):
    async def run(self, ctx: GraphRunContext[Article]) -> Review:
        ctx.state.edits.append('drafted')
        return Review(reviewer='ada')


@dataclass
class Review(BaseNode[Article, None, str]):
    reviewer: str

    async def run(self, ctx: GraphRunContext[Article]) -> Publish:
        ctx.state.edits.append(f'reviewed by {self.reviewer}')
        return Publish()


@dataclass
class Publish(BaseNode[Article, None, str]):
    async def run(self, ctx: GraphRunContext[Article]) -> End[str]:
        ctx.state.edits.append('published')
        return End(f'{ctx.state.title}: {", ".join(ctx.state.edits)}')


articles = Graph(nodes=[Draft, Review, Publish], name='articles')


def traced_articles(provider: TracerProvider) -> Graph[Article, None, str]:
    """The articles graph, its spans going to `provider`."""
    return Graph(
        nodes=list(articles.get_nodes()),
        name='articles',
        instrumentation=InstrumentationSettings(tracer_provider=provider),
    )


async def in_three_parts(provider: TracerProvider) -> list[tuple[str, str]]:
    """The articles run in three parts, each in its own trace linking to the one before (one step per part), its
    spans going to `provider` (flushed): the (trace id, run id) of each part."""
    graph = traced_articles(provider)
    persistence = FullStatePersistence()
    async with graph.iter(Draft(), state=Article('T'), persistence=persistence) as first:
        await first.next()  # Draft
    async with graph.iter_from_persistence(persistence) as second:
        await second.next()  # Review, then the run leaves again
    async with graph.iter_from_persistence(persistence) as third:
        async for _ in third:  # Publish
            pass
    provider.force_flush()
    parts = [(run.trace_id or '', run.run_id) for run in (first, second, third)]
    assert len({trace for trace, _ in parts}) == 3
    return parts


def _tracing(spans: str) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from tracegraph.exporters import JsonLinesSpanExporter

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(spans)))
    trace.set_tracer_provider(provider)


async def start(path: Path) -> dict[str, object]:
    persistence = FileStatePersistence(path)
    async with articles.iter(Draft(), state=Article('Graphs'), persistence=persistence) as run:
        await run.next()
        await run.next()
    return {'trace_id': run.trace_id, 'traceparent': run.traceparent, 'next': repr(run.next_node)}


async def resume(path: Path, join: bool) -> dict[str, object]:
    persistence = FileStatePersistence(path)
    async with articles.iter_from_persistence(persistence, join_trace=join) as run:
        async for _ in run:
            pass
    assert run.result is not None
    return {'trace_id': run.trace_id, 'output': run.result.output, 'traceparent': run.result.traceparent}


async def hammer(path: Path, count: int, tag: str) -> dict[str, object]:
    persistence = FileStatePersistence(path)
    persistence.set_graph_types(articles)
    for i in range(count):
        await persistence.snapshot_node(Article(f'{tag}-{i}'), Review(reviewer=f'{tag}-{i}'))
    return {'written': count}


def main(argv: list[str]) -> None:
    command, path = argv[0], Path(argv[1])
    if command == 'hammer':
        summary = asyncio.run(hammer(path, int(argv[2]), argv[3]))
    else:
        _tracing(argv[2])
        if command == 'start':
            summary = asyncio.run(start(path))
        else:
            summary = asyncio.run(resume(path, join=argv[3:] == ['join']))
    print(json.dumps(summary))


if __name__ == '__main__':
    main(sys.argv[1:])
