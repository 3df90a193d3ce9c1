"""The GIL experiment behind docs/decisions/0007-deferred-tracing-gil.md.

A background hashing thread in the same process competes with the hot path for the GIL. This script paces
resolves at a fixed rate (busy-waiting between calls, as a tool loop does) and reports the resolve latency
distribution for each trace configuration:

- ``immediate``: hash and store inside the call (no background thread);
- ``deferred``: the default processor (short chunks, ``sleep(0)`` between them);
- ``deferred-bigchunk``: one long chunk per round (no yielding);
- ``deferred-switch100us``: the default processor with ``sys.setswitchinterval(0.0001)``;
- ``deferred-nofreeze``: the default processor without ``gc.freeze()`` after loading.

Run: ``.venv/bin/python benchmarks/gil_tail.py [--rate 20000] [--calls 40000] [--json]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

import cra

ATLAS = json.loads(
    (Path(__file__).resolve().parent.parent / "tests/conformance/resolve.partial.json").read_text()
)["atlas"]


def percentile(sorted_ns: list[int], fraction: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(len(sorted_ns) * fraction))] / 1000


def run(config: str, rate: int, calls: int) -> dict[str, Any]:
    tracing = "immediate" if config == "immediate" else "deferred"
    runtime = cra.Runtime(clock=cra.ManualClock(), tracing=tracing)
    runtime.load_atlas(ATLAS)
    tracer = runtime._tracer
    if config == "deferred-bigchunk":
        tracer.chunk_size = 1 << 30  # type: ignore[union-attr]
    previous_switch = sys.getswitchinterval()
    if config == "deferred-switch100us":
        sys.setswitchinterval(0.0001)
    session = runtime.create_session("bench", "Measure the tail").session_id
    for _ in range(1000):
        runtime.resolve(session)
    runtime.flush()
    gc.collect()
    if config != "deferred-nofreeze":
        gc.freeze()
    period = 1_000_000_000 // rate
    samples: list[int] = []
    next_at = time.perf_counter_ns()
    started = next_at
    for _ in range(calls):
        while time.perf_counter_ns() < next_at:
            pass
        begin = time.perf_counter_ns()
        runtime.resolve(session)
        samples.append(time.perf_counter_ns() - begin)
        next_at += period
    elapsed = (time.perf_counter_ns() - started) / 1e9
    stats = runtime.trace_stats()
    runtime.close()
    sys.setswitchinterval(previous_switch)
    gc.unfreeze()
    samples.sort()
    return {
        "config": config,
        "target_rate": rate,
        "achieved_rate": round(calls / elapsed),
        "p50_us": percentile(samples, 0.5),
        "p99_us": percentile(samples, 0.99),
        "p999_us": percentile(samples, 0.999),
        "max_buffered": stats.get("capacity"),
        "written": stats.get("written"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, nargs="*", default=[5000, 20000])
    parser.add_argument("--calls", type=int, default=40000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [
        run(config, rate, args.calls)
        for rate in args.rate
        for config in (
            "immediate",
            "deferred",
            "deferred-bigchunk",
            "deferred-switch100us",
            "deferred-nofreeze",
        )
    ]
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{'config':22} {'rate':>7} {'achieved':>9} {'p50 µs':>8} {'p99 µs':>8} {'p99.9 µs':>9}")
    for row in rows:
        print(
            f"{row['config']:22} {row['target_rate']:>7} {row['achieved_rate']:>9} {row['p50_us']:>8.1f} "
            f"{row['p99_us']:>8.1f} {row['p999_us']:>9.1f}"
        )


if __name__ == "__main__":
    main()
