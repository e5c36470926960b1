"""A bounded workload of real tracegraph runs, to fill the dashboards (and to test them against Prometheus).

Two graphs, `checkout` and `ingest`, share a final `Audit` node; some nodes fail at random, some runs loop, and some
are left early (interrupted). Metrics go to `/metrics` on `--prometheus-port`, spans to OTLP or a JSON Lines file:

    python dashboards/workload.py --service shop --prometheus-port 9464 --seconds 600            # OTLP to :4318
    python dashboards/workload.py --service shop --prometheus-port 9464 --spans-file spans.jsonl  # no collector
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import dataclass

from tracegraph import BaseNode, End, Graph, GraphRunContext
from tracegraph.exporters import MetricsOptions, configure

__all__ = ('Deps', 'checkout', 'ingest', 'run_workload', 'main')


class PaymentDeclined(Exception):
    """The card was declined: a failure the dashboards should count."""


class MalformedRecord(ValueError):
    """A record that does not parse: a failure the dashboards should count."""


@dataclass(kw_only=True)
class Deps:
    """What every node gets: the random source, so a seed makes a workload repeatable."""

    rng: random.Random
    failure_rate: float = 0.15


async def _work(ctx: GraphRunContext[None, Deps], low: float, high: float) -> None:
    await asyncio.sleep(ctx.deps.rng.uniform(low, high))


@dataclass
class Validate(BaseNode[None, Deps, str]):
    """Checks the order."""

    items: int

    async def run(self, ctx: GraphRunContext[None, Deps]) -> Charge:
        await _work(ctx, 0.0005, 0.003)
        return Charge(amount=self.items * 9.5)


@dataclass
class Charge(BaseNode[None, Deps, str]):
    """Charges the card: sometimes slow, sometimes declined."""

    amount: float

    async def run(self, ctx: GraphRunContext[None, Deps]) -> Ship:
        slow = ctx.deps.rng.random() < 0.1
        await _work(ctx, 0.02, 0.06) if slow else await _work(ctx, 0.002, 0.01)
        if ctx.deps.rng.random() < ctx.deps.failure_rate:
            raise PaymentDeclined(f'card declined for {self.amount:.2f}')
        return Ship()


@dataclass
class Ship(BaseNode[None, Deps, str]):
    """Books the parcel."""

    async def run(self, ctx: GraphRunContext[None, Deps]) -> Audit:
        await _work(ctx, 0.001, 0.008)
        return Audit(what='order shipped')


@dataclass
class Fetch(BaseNode[None, Deps, str]):
    """Fetches a batch of records."""

    async def run(self, ctx: GraphRunContext[None, Deps]) -> Parse:
        await _work(ctx, 0.001, 0.012)
        return Parse(left=ctx.deps.rng.randint(1, 3))


@dataclass
class Parse(BaseNode[None, Deps, str]):
    """Parses one record per step, looping until the batch is done; some records are malformed."""

    left: int

    async def run(self, ctx: GraphRunContext[None, Deps]) -> Parse | Store:
        await _work(ctx, 0.0002, 0.002)
        if ctx.deps.rng.random() < ctx.deps.failure_rate / 2:
            raise MalformedRecord(f'record {self.left} does not parse')
        return Parse(left=self.left - 1) if self.left > 1 else Store()


@dataclass
class Store(BaseNode[None, Deps, str]):
    """Writes the batch."""

    async def run(self, ctx: GraphRunContext[None, Deps]) -> Audit:
        await _work(ctx, 0.002, 0.015)
        return Audit(what='batch stored')


@dataclass
class Audit(BaseNode[None, Deps, str]):
    """Records what happened; the one node both graphs share."""

    what: str

    async def run(self, ctx: GraphRunContext[None, Deps]) -> End[str]:
        await _work(ctx, 0.0002, 0.001)
        return End(self.what)


checkout = Graph(nodes=(Validate, Charge, Ship, Audit), name='checkout')
ingest = Graph(nodes=(Fetch, Parse, Store, Audit), name='ingest')


async def _one_run(deps: Deps) -> None:
    rng = deps.rng
    graph, start = (checkout, Validate(items=rng.randint(1, 5))) if rng.random() < 0.5 else (ingest, Fetch())
    try:
        if rng.random() < 0.05:
            # Leave the run after its first step: it ends as interrupted.
            async with graph.iter(start, deps=deps) as run:
                async for _ in run:
                    break
        else:
            await graph.run(start, deps=deps)
    except (PaymentDeclined, MalformedRecord):
        pass


async def run_workload(*, seconds: float, seed: int, pause: float = 0.005) -> int:
    """Run graphs one after another until `seconds` have passed; returns how many runs were started."""
    deps = Deps(rng=random.Random(seed))
    deadline = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < deadline:
        await _one_run(deps)
        runs += 1
        await asyncio.sleep(pause)
    return runs


def main() -> None:
    """Parse the command line, configure tracegraph's exporters, and run the workload."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--service', required=True, help='service.name of the workload')
    parser.add_argument('--prometheus-port', type=int, help='serve /metrics on 127.0.0.1 at this port')
    parser.add_argument('--endpoint', help='OTLP/HTTP base URL for spans and metrics (default: localhost:4318)')
    parser.add_argument('--spans-file', help='write spans to this JSON Lines file instead of OTLP')
    parser.add_argument('--seconds', type=float, default=60.0, help='stop after this long (default 60)')
    parser.add_argument('--seed', type=int, default=1)
    args = parser.parse_args()
    with configure(
        service_name=args.service,
        endpoint=args.endpoint,
        file=args.spans_file,
        metrics=MetricsOptions(prometheus_port=args.prometheus_port),
    ) as telemetry:
        if telemetry.prometheus_url:
            print(f'metrics at {telemetry.prometheus_url}', flush=True)
        runs = asyncio.run(run_workload(seconds=args.seconds, seed=args.seed))
        print(f'{runs} runs', flush=True)


if __name__ == '__main__':
    main()
