"""Does `tracegraph serve` stay responsive while it renders a big run? (run by hand)

    .venv/bin/python bench/serve_responsive.py [--steps 10000] [--seconds 10]

Starts `tracegraph serve` (a real process, default decode workers) on a free port, stores one run of `--steps`
node steps, then for `--seconds` measures the latency of `GET /healthz` and of a small `POST /v1/traces`, once
while nothing else happens and once while other clients load that run's page and/or its JSON (`--load`) back to
back.
Prints p50/p99 in ms of each, and how many pages were rendered meanwhile. Target: p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'tests'))

from serve_helpers import crafted_body, crafted_run, serve_process, trace_of

PROTO = {'Content-Type': 'application/x-protobuf'}


def _quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99)] * 1000


def _measure(url: str, seconds: float) -> tuple[list[float], list[float]]:
    health: list[float] = []
    ingest: list[float] = []
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=30) as c:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            c.get('/healthz').raise_for_status()
            health.append(time.perf_counter() - t0)
            body = crafted_body(*crafted_run())
            t0 = time.perf_counter()
            c.post('/v1/traces', content=body, headers=PROTO).raise_for_status()
            ingest.append(time.perf_counter() - t0)
            time.sleep(0.005)
    return health, ingest


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or '').splitlines()[0])
    parser.add_argument('--steps', type=int, default=10_000)
    parser.add_argument('--seconds', type=float, default=10.0)
    parser.add_argument(
        '--load', choices=('page', 'json', 'both'), default='both', help='what the busy clients load back to back'
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data, serve_process(Path(data)) as served:
        spans = crafted_run(nodes=args.steps)
        with httpx.Client(base_url=served.url, timeout=60) as c:
            for i in range(0, len(spans), 2000):
                c.post('/v1/traces', content=crafted_body(*spans[i : i + 2000]), headers=PROTO).raise_for_status()
        quiet = _measure(served.url, args.seconds)
        stop = threading.Event()
        rendered = [0]

        def load_pages(path: str) -> None:
            with httpx.Client(base_url=served.url, timeout=120) as c:
                while not stop.is_set():
                    c.get(path).raise_for_status()
                    rendered[0] += 1

        loaders = [
            threading.Thread(target=load_pages, args=(f'{p}{trace_of(spans)}',))
            for p in {'page': ('/runs/',), 'json': ('/api/runs/',), 'both': ('/runs/', '/api/runs/')}[args.load]
        ]
        for t in loaders:
            t.start()
        busy = _measure(served.url, args.seconds)
        stop.set()
        for t in loaders:
            t.join()
    print(f'{args.steps}-step run; {rendered[0]} big pages ({args.load}) rendered during the busy phase')
    for label, (health, ingest) in (('quiet', quiet), ('busy', busy)):
        (h50, h99), (i50, i99) = _quantiles(health), _quantiles(ingest)
        print(
            f'  {label:5}  /healthz p50 {h50:6.1f} ms  p99 {h99:6.1f} ms   ingest p50 {i50:6.1f} ms  p99 {i99:6.1f} ms'
        )


if __name__ == '__main__':
    main()
