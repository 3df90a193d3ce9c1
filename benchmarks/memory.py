"""Memory retained per operation and per stored trace event (SPEC 12: <= 2 KiB per stored event in memory
backends), measured with tracemalloc.

    .venv/bin/python benchmarks/memory.py            # a table
    .venv/bin/python benchmarks/memory.py --json     # one JSON line

Each scenario runs on a fresh runtime (ManualClock, memory:// storage): one warm-up call, a full collection,
then ``count`` calls under tracemalloc. ``bytes/call`` is everything the runtime keeps per call (events,
resolutions, sets of ids...); ``bytes/event`` divides the same by the events the call stored, so it is an
upper bound of the per-event cost; ``emit`` stores nothing else, so there it is the per-event cost itself.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

import cra
from atlases import generated_atlas, make_runtime, partial_atlas
from cra._ids import uuid7_ids
from cra.trace.tracer import Record

Scenario = tuple[cra.Runtime, str, Callable[[], object]]


def resolve_scenario(manifest: dict[str, Any]) -> Scenario:
    runtime = make_runtime(manifest)
    sid = runtime.create_session("agent-1", "Manage resources").session_id
    return runtime, sid, lambda: runtime.resolve(sid)


def execute_scenario() -> Scenario:
    runtime = make_runtime(partial_atlas())
    runtime.register("resource.get", lambda params: {"resource_id": params["resource_id"], "found": True})
    sid = runtime.create_session("agent-1", "Manage resources").session_id
    rid = runtime.resolve(sid).resolution_id
    return runtime, sid, lambda: runtime.execute(sid, rid, "resource.get", {"resource_id": "r-1"})


def emit_scenario() -> Scenario:
    runtime = make_runtime(partial_atlas())
    sid = runtime.create_session("agent-1", "Manage resources").session_id
    span = runtime._sessions[sid].span(uuid7_ids())
    payload = {"policy_id": "allow-read", "result": "allow", "action_id": "resource.get"}
    return runtime, sid, lambda: runtime._tracer.emit(span, [Record("policy.evaluated", payload)])


def measure(scenario: Scenario, count: int) -> dict[str, Any]:
    runtime, sid, call = scenario
    flush = getattr(runtime, "flush", lambda: True)  # deferred tracing: count chained events, not buffers
    call()
    flush()
    gc.collect()
    events_before = len(runtime.get_trace(sid))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(count):
        call()
    flush()
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    events = len(runtime.get_trace(sid)) - events_before
    return {
        "count": count,
        "events_per_call": events / count,
        "bytes_per_call": round(retained / count),
        "bytes_per_event": round(retained / events) if events else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    args = parser.parse_args(argv)
    scenarios: list[tuple[str, Callable[[], Scenario], int]] = [
        ("resolve_5", lambda: resolve_scenario(partial_atlas()), 2_000),
        ("resolve_200_50", lambda: resolve_scenario(generated_atlas()), 100),
        ("execute_5", execute_scenario, 2_000),
        ("emit", emit_scenario, 10_000),
    ]
    results = {name: measure(setup(), count) for name, setup, count in scenarios}
    if args.json:
        print(json.dumps({"cra_version": cra.__version__, "results": results}, sort_keys=True))
        return 0
    print(f"{'scenario':16s} {'calls':>6s} {'events/call':>11s} {'bytes/call':>11s} {'bytes/event':>11s}")
    for name, r in results.items():
        print(
            f"{name:16s} {r['count']:6d} {r['events_per_call']:11.1f} {r['bytes_per_call']:11,d} "
            f"{r['bytes_per_event'] or 0:11,d}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
