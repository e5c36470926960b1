"""Instructions per node step under `valgrind --tool=callgrind`: the repeatable twin of `step_overhead.py`.

Wall-clock figures on the shared 2-core machine move by ±20 % between worker processes; instruction counts move
by ~3 %. Keep `tracegraph/` and `bench/` unedited while it runs: a module recompiled in one of a pair's two runs adds
its compilation to it (the script compiles both trees once before it starts). Each (mode, variant) runs in a fresh
process under callgrind twice, with 0 and with `--steps` node steps (after the same warm-up), and the difference divided by the steps is its cost per step, all
threads included (the batch processor's worker does its share of the work while the graph runs, as it would on the
GIL). Instructions are not time — a cache miss costs more than an add — but ratios of them between code paths that
do the same kind of work are what the wall-clock ratios would be on a quiet machine.

    .venv/bin/python bench/step_instructions.py [--steps 2000] [--workload long|short]

Uses the `WORKLOAD`, modes and variants of `step_overhead.py`. The classic `pydantic_graph` variants run in
`step_overhead.py`'s classic venv (created on first use), so every target in its table has an instruction-count twin.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
PAIRS = (
    ('none', 'bare_loop[tracegraph]'),
    ('none', 'tracegraph'),
    ('none', 'pydantic_graph'),
    ('otel', 'bare_loop_one_span'),
    ('otel', 'bare_loop_one_span_same_attrs'),
    ('otel', 'tracegraph'),
    ('otel_metrics', 'bare_loop_one_span'),
    ('otel_metrics', 'tracegraph'),
    ('otel_metrics_gate_closed', 'tracegraph'),
    ('otel_unsampled', 'bare_loop_one_span'),
    ('otel_unsampled', 'tracegraph'),
    ('logfire', 'bare_loop_one_span'),
    ('logfire', 'tracegraph'),
    ('logfire', 'pydantic_graph'),
)
CLASSIC = 'pydantic_graph'
"""The classic library's variants carry its name, and run in the classic venv."""


def run_child(mode: str, variant: str, workload: str, steps: int) -> None:
    """Warm `variant` up, then run `steps` node steps of it (the measured process)."""
    sys.path.insert(0, str(BENCH))
    import step_overhead as so

    lib = CLASSIC if CLASSIC in variant else 'tracegraph'
    if mode == 'otel_metrics_gate_closed':
        # What an SDK version the merge is not tested on gets: one SDK `record` per duration, nothing merged.
        from tracegraph.exporters.metrics import sdk_merge_gate

        sdk_merge_gate.merge_enabled = lambda: False
        mode = 'otel_metrics'
    if lib == CLASSIC and mode == 'none':
        sys.modules['logfire'] = None  # pyright: ignore[reportArgumentType]  # as step_overhead's worker: the no-op shim
    _, tracer = so._setup_mode(mode, so._Counter(), lib)  # pyright: ignore[reportPrivateUsage]
    long_fn, short_fn = so._variants(lib, mode, tracer)[variant]  # pyright: ignore[reportPrivateUsage]

    async def main() -> None:
        await long_fn(200)
        await short_fn(40, so.SHORT_STEPS)
        # The warmed-up heap is left out of later collections: a full collection landing in one run of a pair and
        # not the other moved 300-step figures by up to 30 %. The steps' own garbage is still collected and counted.
        gc.collect()
        gc.freeze()
        if steps:
            await (long_fn(steps) if workload == 'long' else short_fn(steps // so.SHORT_STEPS, so.SHORT_STEPS))

    asyncio.run(main())


def instructions(python: str, mode: str, variant: str, workload: str, steps: int) -> int:
    """Instructions `python` runs for `steps` node steps of `variant` in `mode`, warm-up and start-up included."""
    command = ['valgrind', '--tool=callgrind', '--callgrind-out-file=/dev/null', python, __file__]
    command += ['--child', mode, variant, workload, str(steps)]
    # One hash seed for every run: dict and set layouts, and so their probing, are the same in both runs of a pair.
    env = {**os.environ, 'PYTHONHASHSEED': '0', 'LOGFIRE_IGNORE_NO_CONFIG': '1'}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    found = re.search(r'Collected : (\d+)', done.stderr)
    assert found, done.stderr[-2000:]
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or '').splitlines()[0])
    parser.add_argument('--steps', type=int, default=2000)
    parser.add_argument('--workload', choices=('long', 'short'), default='long')
    parser.add_argument('--child', nargs=4, help=argparse.SUPPRESS)
    parser.add_argument('--json', type=Path, default=None)
    parser.add_argument('--only', action='append', default=None, help='MODE:VARIANT to measure (repeatable)')
    parser.add_argument(
        '--ladder', action='store_true', help='what each group of node-span attributes costs, on the SDK by hand'
    )
    args = parser.parse_args()
    if args.child:
        mode, variant, workload, steps = args.child
        run_child(mode, variant, workload, int(steps))
        return
    # Bytecode written now, so that neither run of a pair pays for compiling a module the other finds compiled.
    subprocess.run([sys.executable, '-m', 'compileall', '-q', str(BENCH), str(BENCH.parent / 'tracegraph')], check=True)
    sys.path.insert(0, str(BENCH))  # step_overhead: the variants' definitions and the classic venv
    per_step: dict[str, float] = {}
    pairs = [tuple(o.split(':', 1)) for o in args.only] if args.only else PAIRS
    if args.ladder:
        from step_overhead import BY_HAND

        pairs = [('otel', 'bare_loop_one_span'), *(('otel', name) for name in BY_HAND)]
        pairs += [('otel', 'tracegraph'), ('otel', 'tracegraph_without_input')]
    classic_python: str | None = None
    if any(CLASSIC in variant for _, variant in pairs):
        from step_overhead import ensure_classic_venv

        classic_python = str(ensure_classic_venv())  # checked (or made) once, not per run
    for mode, variant in pairs:
        python = classic_python if classic_python is not None and CLASSIC in variant else sys.executable
        base = instructions(python, mode, variant, args.workload, 0)
        full = instructions(python, mode, variant, args.workload, args.steps)
        per_step[f'{mode} {variant}'] = (full - base) / args.steps
        print(f'{mode:<15} {variant:<32} {per_step[f"{mode} {variant}"] / 1000:9.1f} k instructions/step', flush=True)
    if args.ladder:
        full = per_step['otel bare_loop_one_span_same_attrs']
        floor = per_step['otel bare_loop_one_span']
        print(f'{"the whole contract by hand / floor":<50} {full / floor:6.2f}')
        tracegraph = per_step['otel tracegraph']
        print(f'{"tracegraph / floor":<50} {tracegraph / floor:6.2f}')
        print(f'{"tracegraph / the whole contract by hand":<50} {tracegraph / full:6.2f}')
        without_input = per_step['otel tracegraph_without_input']
        print(
            f'tracegraph without node input: {without_input / floor:5.2f}x the floor, input {tracegraph - without_input:.0f}'
        )
        for name in per_step:
            if name.startswith('otel by_hand_without_'):
                group = name.removeprefix('otel by_hand_without_')
                saved = full - per_step[name]
                print(f'{group:<32} {saved / 1000:7.1f} k/step; without it {per_step[name] / floor:5.2f}x the floor')
        if args.json:
            args.json.write_text(json.dumps({'workload': args.workload, 'per_step': per_step}, indent=2))
        return
    if args.only:
        return
    ratios: dict[str, Any] = {
        'none: tracegraph / pydantic_graph': per_step['none tracegraph'] / per_step['none pydantic_graph'],
        'otel: tracegraph / one-span floor': per_step['otel tracegraph'] / per_step['otel bare_loop_one_span'],
        'otel+metrics: tracegraph / one-span floor': per_step['otel_metrics tracegraph']
        / per_step['otel_metrics bare_loop_one_span'],
        'otel+metrics / otel: tracegraph': per_step['otel_metrics tracegraph'] / per_step['otel tracegraph'],
        'otel+metrics, merge gate closed / open: tracegraph': per_step['otel_metrics_gate_closed tracegraph']
        / per_step['otel_metrics tracegraph'],
        'logfire: tracegraph / pydantic_graph+logfire': per_step['logfire tracegraph']
        / per_step['logfire pydantic_graph'],
        'logfire: one-span floor / pydantic_graph+logfire': per_step['logfire bare_loop_one_span']
        / per_step['logfire pydantic_graph'],
        'otel: same attributes by hand / one-span floor': per_step['otel bare_loop_one_span_same_attrs']
        / per_step['otel bare_loop_one_span'],
        'otel unsampled: tracegraph / none: tracegraph': per_step['otel_unsampled tracegraph']
        / per_step['none tracegraph'],
        'otel unsampled: tracegraph / one (unsampled) span floor': per_step['otel_unsampled tracegraph']
        / per_step['otel_unsampled bare_loop_one_span'],
    }
    for name, value in ratios.items():
        print(f'{name:<50} {value:6.2f}')
    if args.json:
        args.json.write_text(json.dumps({'workload': args.workload, 'per_step': per_step, 'ratios': ratios}, indent=2))


if __name__ == '__main__':
    main()
