"""Per-call latency distributions of the embedded runtime (the basis of ``cra bench``).

    .venv/bin/python benchmarks/latency.py            # a table in microseconds
    .venv/bin/python benchmarks/latency.py --json     # one JSON line instead

Each scenario gets a fresh runtime (ManualClock, memory:// storage, the runtime's default tracing mode,
``--tracing immediate|deferred`` to choose) and one session, runs a warm-up, calls ``gc.collect()``, then
times every call on its own with ``time.perf_counter_ns``. Calls are made back to back (not paced): with
deferred tracing the background processor runs beside them and, when it falls behind, the buffer fills and
calls wait for it, as they would under that load.
The garbage collector stays enabled, so its pauses (over a heap that holds every stored event) show in the
tail, as they would for a caller. The timer's own cost (``timer_overhead_ns``) is reported, not subtracted.

Scenarios: ``resolve_5`` (the 5-action conformance Atlas), ``resolve_200_50`` (200 actions / 50
policies), each also ``_uncached`` (``resolution_cache=False``, where the runtime has that cache; the plain
ones repeat one request, so the cache answers them), ``execute_5`` (``resource.get`` with parameter
validation and a trivial handler, one resolution reused) and ``emit`` (one record through the runtime's
tracer: the hot-path append).
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import cra
from atlases import generated_atlas, make_runtime, partial_atlas
from cra._ids import uuid7_ids
from cra.trace.tracer import Record

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def percentile(ordered: list[int], pct: float) -> int:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def timer_overhead_ns(samples: int = 100_000) -> int:
    """The median cost of two back-to-back ``perf_counter_ns`` calls (what every sample includes)."""
    clock = time.perf_counter_ns
    deltas = []
    for _ in range(samples):
        t0 = clock()
        deltas.append(clock() - t0)
    deltas.sort()
    return deltas[len(deltas) // 2]


Scenario = tuple[cra.Runtime, str, Callable[[], object]]


def events_per_call(scenario: Scenario) -> float:
    """How many trace events one call stores (one probe call; ``get_trace`` flushes a deferred buffer)."""
    runtime, sid, call = scenario
    before = len(runtime.get_trace(sid))
    call()
    return float(len(runtime.get_trace(sid)) - before)


def measure(scenario: Scenario, count: int, warmup: int, event_rate: float = 0) -> dict[str, Any]:
    """Time ``count`` calls one by one, after ``warmup`` untimed calls and a full collection.

    With ``event_rate`` > 0 the calls are paced so that they emit about that many trace events per second
    (sleeping, which releases the GIL, until each call's slot; a late call starts at once and the schedule
    moves on from it, with no catch-up burst). Otherwise calls are made back to back.
    """
    call = scenario[2]
    per_call = events_per_call(scenario)
    for _ in range(warmup):
        call()
    gc.collect()
    gen2_before = gc.get_stats()[2]["collections"]
    clock = time.perf_counter_ns
    sleep = time.sleep
    interval = round(per_call / event_rate * 1e9) if event_rate > 0 and per_call > 0 else 0
    samples = [0] * count
    started = clock()
    due = started
    for i in range(count):
        if interval:
            now = clock()
            if now < due:
                sleep((due - now) / 1e9)
            else:
                due = now
            due += interval
        t0 = clock()
        call()
        samples[i] = clock() - t0
    wall = clock() - started
    samples.sort()
    result: dict[str, Any] = {
        "count": count,
        "events_per_call": per_call,
        "paced_calls_per_s": 1e9 / interval if interval else None,
    }
    for pct in PERCENTILES:
        result[f"p{pct:g}".replace(".", "_")] = percentile(samples, pct) / 1000
    result.update(
        {
            "min": samples[0] / 1000,
            "mean": sum(samples) / count / 1000,
            "max": samples[-1] / 1000,
            "calls_per_s": count / (wall / 1e9),
            "gen2_collections": gc.get_stats()[2]["collections"] - gen2_before,
        }
    )
    return result


# Extra Runtime keyword arguments (``--tracing deferred`` sets ``tracing``); empty = the runtime's default.
RUNTIME_KWARGS: dict[str, Any] = {}
NULL_TRACE = False  # --null-trace: a diagnostic floor, see main()


def _runtime(manifest: dict[str, Any], **options: Any) -> cra.Runtime:
    runtime = make_runtime(manifest, **RUNTIME_KWARGS, **options)
    if NULL_TRACE:
        # Records are still built by the operation; nothing is chained, hashed or stored.
        runtime._tracer.emit = lambda span, records, **_: []  # type: ignore[method-assign]
    return runtime


def scenario_resolve(manifest: dict[str, Any], **options: Any) -> Scenario:
    runtime = _runtime(manifest, **options)
    sid = runtime.create_session("agent-1", "Manage resources").session_id
    resolve = runtime.resolve
    return runtime, sid, lambda: resolve(sid)


def scenario_execute() -> Scenario:
    runtime = _runtime(partial_atlas())
    runtime.register("resource.get", lambda params: {"resource_id": params["resource_id"], "found": True})
    sid = runtime.create_session("agent-1", "Manage resources").session_id
    rid = runtime.resolve(sid).resolution_id
    execute = runtime.execute
    params = {"resource_id": "r-1"}
    return runtime, sid, lambda: execute(sid, rid, "resource.get", params)


def scenario_emit() -> Scenario:
    runtime = make_runtime(partial_atlas(), **RUNTIME_KWARGS)
    sid = runtime.create_session("agent-1", "Manage resources").session_id
    span = runtime._sessions[sid].span(uuid7_ids())
    emit = runtime._tracer.emit
    payload = {"policy_id": "allow-read", "result": "allow", "action_id": "resource.get"}
    return runtime, sid, lambda: emit(span, [Record("policy.evaluated", payload)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    parser.add_argument("--resolves", type=int, default=20_000, help="resolves on the 5-action Atlas")
    parser.add_argument("--resolves-large", type=int, default=5_000, help="resolves on the 200/50 Atlas")
    parser.add_argument("--executes", type=int, default=20_000, help="executes on the 5-action Atlas")
    parser.add_argument("--emits", type=int, default=20_000, help="single-event trace emits")
    parser.add_argument(
        "--event-rate",
        type=float,
        default=0,
        help="pace each scenario's calls to about this many trace events per second (default: back to back)",
    )
    parser.add_argument("--warmup", type=float, default=0.05, help="warm-up calls, as a fraction of count")
    parser.add_argument(
        "--tracing",
        choices=("immediate", "deferred"),
        help="pass tracing= to cra.Runtime (default: the runtime's own default)",
    )
    parser.add_argument(
        "--null-trace",
        action="store_true",
        help="diagnostic: make the tracer's emit a no-op (records are still built; nothing is chained, "
        "hashed or stored) to show what the operations cost without tracing; skips the emit scenario",
    )
    args = parser.parse_args(argv)
    global NULL_TRACE
    NULL_TRACE = args.null_trace
    if args.tracing:
        RUNTIME_KWARGS["tracing"] = args.tracing
    probe = cra.Runtime(**RUNTIME_KWARGS)
    tracing = str(getattr(probe, "tracing", "immediate"))  # versions without the option trace immediately
    probe.close()
    if args.null_trace:
        tracing = "none (--null-trace diagnostic)"
    if args.null_trace:
        args.emits = 0

    uncached = {"resolution_cache": False}
    scenarios: list[tuple[str, Callable[[], Scenario], int]] = [
        ("resolve_5", lambda: scenario_resolve(partial_atlas()), args.resolves),
        ("resolve_5_uncached", lambda: scenario_resolve(partial_atlas(), **uncached), args.resolves),
        ("resolve_200_50", lambda: scenario_resolve(generated_atlas()), args.resolves_large),
        (
            "resolve_200_50_uncached",
            lambda: scenario_resolve(generated_atlas(), **uncached),
            args.resolves_large,
        ),
        ("execute_5", scenario_execute, args.executes),
        ("emit", scenario_emit, args.emits),
    ]
    if "resolution_cache" not in inspect.signature(cra.Runtime).parameters:  # no cache in this version
        scenarios = [s for s in scenarios if not s[0].endswith("_uncached")]
    report: dict[str, Any] = {
        "cra_version": cra.__version__,
        "tracing": tracing,
        "storage": "memory://",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "timer_overhead_ns": timer_overhead_ns(),
        "event_rate": args.event_rate or None,
        "unit": "us",
        "results": {},
    }
    if not args.json:
        print(f"cra {report['cra_version']}  python {report['python']}  {report['cpu']}  x{report['nproc']}")
        pacing = f"paced at {args.event_rate:,.0f} events/s" if args.event_rate else "back to back"
        print(
            f"tracing: {tracing}, storage: memory://, calls {pacing}, "
            f"timer overhead {report['timer_overhead_ns']} ns"
        )
        header = f"{'scenario':24s} {'n':>6s} " + " ".join(f"{f'p{p:g}':>9s}" for p in PERCENTILES)
        print(header + f" {'mean':>9s} {'max':>10s} {'calls/s':>9s} {'gc2':>4s}   (us)")
    for name, setup, count in scenarios:
        if count <= 0:
            continue
        scenario = setup()
        result = measure(scenario, count, max(1, int(count * args.warmup)), args.event_rate)
        scenario[0].close()
        del scenario
        report["results"][name] = result
        if not args.json:
            cells = " ".join(f"{result[f'p{p:g}'.replace('.', '_')]:9.1f}" for p in PERCENTILES)
            print(
                f"{name:24s} {count:6d} {cells} {result['mean']:9.1f} {result['max']:10.1f} "
                f"{result['calls_per_s']:9.0f} {result['gen2_collections']:4d}",
                flush=True,
            )
        gc.collect()
    report["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print(f"peak RSS {report['max_rss_mib']} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
