"""Core benchmarks (SPEC 12), run with pyperf.

    .venv/bin/python benchmarks/bench_core.py --fast -o results.json
    .venv/bin/python -m pyperf stats results.json           # or: pyperf compare_to old.json results.json

Every benchmark is a ``bench_time_func``: the setup (a fresh runtime, session, chain or directory) happens
outside the timed loop and only ``loops`` calls of the measured operation are timed, so pyperf's per-call
overhead is excluded. Each timed call starts from fresh state, so a worker's memory stays bounded.

Runtimes use the runtime's default tracing mode (deferred since 4066300, immediate before);
``--tracing immediate|deferred`` chooses one. Immediate: every call hashes and stores its events before it
returns. Deferred: a call appends records to a buffer and the background processor chains and stores them
while the loop runs; what is still buffered when a loop ends is flushed after the timing (``close``). The
``resolve`` benchmarks repeat one request on one session, so a runtime with a resolution cache answers all
but the first from it; the ``_uncached`` ones pass ``resolution_cache=False``. Throughput benchmarks
(chain + write, verify) are also printed as events/s at the end. See docs/performance.md.
"""

from __future__ import annotations

import importlib.util
import inspect
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pyperf  # type: ignore[import-untyped]

import cra
from atlases import generated_atlas, make_runtime, partial_atlas
from cra._ids import uuid7_ids
from cra.trace.tracer import Record, Span, Tracer, chain_records

VERIFY_EVENTS = 10_000
BATCH = 100
# Extra Runtime keyword arguments (``--tracing deferred`` sets ``tracing``); empty = the runtime's default.
RUNTIME_KWARGS: dict[str, Any] = {}

# --- shared fixtures ---------------------------------------------------------------------------------------


def _session(runtime: cra.Runtime, goal: str = "Manage resources") -> str:
    return runtime.create_session("agent-1", goal).session_id


def _executing_runtime() -> tuple[cra.Runtime, str, str]:
    """A 5-action runtime with a trivial ``resource.get`` handler and one (never expiring) resolution."""
    runtime = make_runtime(partial_atlas(), **RUNTIME_KWARGS)
    runtime.register("resource.get", lambda params: {"resource_id": params["resource_id"], "found": True})
    sid = _session(runtime)
    resolution = runtime.resolve(sid)
    return runtime, sid, resolution.resolution_id


def template_records() -> list[Record]:
    """The records of one real resolve (7 events) and one real execute (3 events) on the 5-action Atlas:
    the payload mix chains are built from."""
    runtime, sid, rid = _executing_runtime()
    runtime.execute(sid, rid, "resource.get", {"resource_id": "r-1"})
    events = runtime.get_trace(sid)[1:]  # drop session.started
    return [Record(e.event_type, dict(e.payload)) for e in events]


def build_chain(n_events: int) -> list[cra.TraceEvent]:
    """A valid chain of ``n_events`` events for one session, in batches of the template's records."""
    records = template_records()
    span = Span(uuid7_ids(), uuid7_ids(), uuid7_ids(), None)
    events: list[cra.TraceEvent] = []
    head = None
    timestamp = cra.format_timestamp(cra.ManualClock().now_us())
    while len(events) < n_events:
        batch = chain_records(span, records[: n_events - len(events)], head, timestamp, uuid7_ids)
        events.extend(batch)
        head = (batch[-1].sequence, batch[-1].event_hash)
    return events


def typical_payloads() -> dict[str, dict[str, Any]]:
    """The payloads of a resolve: the request (nested, with a null) and one policy verdict (flat)."""
    by_type = {r.event_type: r.payload for r in template_records()}
    return {
        "request_received": by_type["carp.request.received"],
        "policy_evaluated": by_type["policy.evaluated"],
    }


# --- benchmarks ---------------------------------------------------------------------------------------------


def bench_resolve(manifest: Callable[[], dict[str, Any]], **options: Any) -> Callable[[int], float]:
    """``loops`` resolves of one session with the same request (the runtime's per-session resolution
    cache, where it has one, answers all but the first; ``resolution_cache=False`` evaluates every time)."""

    def run(loops: int) -> float:
        runtime = make_runtime(manifest(), **RUNTIME_KWARGS, **options)
        resolve, sid = runtime.resolve, _session(runtime)
        t0 = time.perf_counter()
        for _ in range(loops):
            resolve(sid)
        elapsed = time.perf_counter() - t0
        runtime.close()
        return elapsed

    return run


def bench_execute(loops: int) -> float:
    runtime, sid, rid = _executing_runtime()
    execute = runtime.execute
    params = {"resource_id": "r-1"}
    t0 = time.perf_counter()
    for _ in range(loops):
        execute(sid, rid, "resource.get", params)
    elapsed = time.perf_counter() - t0
    runtime.close()
    return elapsed


def bench_emit(loops: int) -> float:
    """One ``policy.evaluated`` record through the runtime's tracer: the hot-path append (immediate mode
    chains, hashes and stores it inside the call; deferred mode appends it to the processor's buffer)."""
    runtime = make_runtime(partial_atlas(), **RUNTIME_KWARGS)
    sid = _session(runtime)
    state = runtime._sessions[sid]
    span = state.span(uuid7_ids())
    emit = runtime._tracer.emit
    payload = {"policy_id": "allow-read", "result": "allow", "action_id": "resource.get"}
    t0 = time.perf_counter()
    for _ in range(loops):
        emit(span, [Record("policy.evaluated", payload)])
    elapsed = time.perf_counter() - t0
    runtime.close()
    return elapsed


def bench_canonical(name: str, **options: Any) -> Callable[[int], float]:
    """``cra.canonical_json`` of a payload (``trusted=True``: the tracer's call, where null stays on
    orjson's fast path; the request payload holds a null, so untrusted it takes the stdlib path)."""

    def run(loops: int) -> float:
        payload = typical_payloads()[name]
        canonical_json = cra.canonical_json
        t0 = time.perf_counter()
        for _ in range(loops):
            canonical_json(payload, **options)
        return time.perf_counter() - t0

    return run


def bench_trace_event(loops: int) -> float:
    """Constructing a TraceEvent: canonical JSON of the payload + SHA-256 of the hash input."""
    payload = typical_payloads()["policy_evaluated"]
    ids = [uuid7_ids() for _ in range(4)]
    event = cra.TraceEvent
    previous = "0" * 64
    t0 = time.perf_counter()
    for i in range(loops):
        event(
            event_id=ids[0],
            trace_id=ids[1],
            span_id=ids[2],
            parent_span_id=ids[3],
            session_id=ids[0],
            sequence=i,
            timestamp="2025-01-01T00:00:00.000000Z",
            event_type="policy.evaluated",
            payload=payload,
            previous_event_hash=previous,
        )
    return time.perf_counter() - t0


def bench_event_hash_wire(loops: int) -> float:
    """``cra.event_hash`` of a wire dict (what verifying an exported file does per event)."""
    wire = build_chain(2)[1].to_dict()
    event_hash = cra.event_hash
    t0 = time.perf_counter()
    for _ in range(loops):
        event_hash(wire)
    return time.perf_counter() - t0


def _check(result: cra.ChainVerification) -> None:
    if not result.valid or result.event_count != VERIFY_EVENTS:
        raise AssertionError(f"benchmark chain did not verify: {result}")


def bench_verify(form: str) -> Callable[[int], float]:
    """``verify_chain`` over 10,000 events given as TraceEvent objects (hashes the stored canonical payload
    bytes) or as wire dicts (re-encodes each payload canonically first, as for a parsed export)."""

    def run(loops: int) -> float:
        chain = build_chain(VERIFY_EVENTS)
        items: list[Any] = [e.to_dict() for e in chain] if form == "wire" else list(chain)
        verify = cra.verify_chain
        t0 = time.perf_counter()
        for _ in range(loops):
            result = verify(items)
        elapsed = time.perf_counter() - t0
        _check(result)
        return elapsed

    return run


def bench_verify_jsonl_file(loops: int) -> float:
    """Read a 10,000-event TRACE JSONL file and verify it (what verifying an exported trace costs)."""
    directory = tempfile.mkdtemp(prefix="cra-bench-")
    path = f"{directory}/chain.trace.jsonl"
    cra.write_jsonl(path, build_chain(VERIFY_EVENTS))
    t0 = time.perf_counter()
    for _ in range(loops):
        result = cra.verify_chain(cra.read_jsonl(path))
    elapsed = time.perf_counter() - t0
    shutil.rmtree(directory)
    _check(result)
    return elapsed


def bench_chain_write(url: str) -> Callable[[int], float]:
    def run(loops: int) -> float:
        directory = None
        storage_url = url
        if url.startswith("jsonl://"):
            directory = tempfile.mkdtemp(prefix="cra-bench-")
            storage_url = f"jsonl://{directory}?fsync=0"
        elif url.startswith("sqlite://"):
            directory = tempfile.mkdtemp(prefix="cra-bench-")
            storage_url = f"sqlite://{directory}/trace.db"  # synchronous=normal: WAL, no fsync per commit
        storage = cra.open_storage(storage_url)
        tracer = Tracer(storage, cra.ManualClock(), uuid7_ids)
        template = template_records()
        records = (template * (BATCH // len(template) + 1))[:BATCH]
        span = Span(uuid7_ids(), uuid7_ids(), uuid7_ids(), None)
        emit = tracer.emit
        t0 = time.perf_counter()
        for _ in range(loops):
            emit(span, records)
        elapsed = time.perf_counter() - t0
        storage.close()
        if directory is not None:
            shutil.rmtree(directory)
        return elapsed

    return run


# name -> (function, events per call; 0 = not a throughput benchmark)
BENCHMARKS: dict[str, tuple[Callable[[int], float], int]] = {
    "resolve_5_actions": (bench_resolve(partial_atlas), 0),
    "resolve_5_actions_uncached": (bench_resolve(partial_atlas, resolution_cache=False), 0),
    "resolve_200_actions_50_policies": (bench_resolve(generated_atlas), 0),
    "resolve_200_actions_50_policies_uncached": (bench_resolve(generated_atlas, resolution_cache=False), 0),
    "execute_validated_5_actions": (bench_execute, 0),
    "trace_emit_1_event": (bench_emit, 0),
    "canonical_json_policy_evaluated": (bench_canonical("policy_evaluated"), 0),
    "canonical_json_request_received": (bench_canonical("request_received"), 0),
    "canonical_json_request_received_trusted": (bench_canonical("request_received", trusted=True), 0),
    "trace_event_new_hash": (bench_trace_event, 0),
    "event_hash_wire_dict": (bench_event_hash_wire, 0),
    "chain_write_memory_batch100": (bench_chain_write("memory://"), BATCH),
    "chain_write_jsonl_fsync0_batch100": (bench_chain_write("jsonl://"), BATCH),
    "chain_write_sqlite_batch100": (bench_chain_write("sqlite://"), BATCH),
    "verify_chain_10k_trace_events": (bench_verify("objects"), VERIFY_EVENTS),
    "verify_chain_10k_wire_dicts": (bench_verify("wire"), VERIFY_EVENTS),
    "verify_jsonl_file_10k": (bench_verify_jsonl_file, VERIFY_EVENTS),
}


# Benchmarks of features older versions lack are left out, so the suite also runs against them.
if importlib.util.find_spec("cra.trace.storage.sqlite") is None:
    del BENCHMARKS["chain_write_sqlite_batch100"]
if "trusted" not in inspect.signature(cra.canonical_json).parameters:
    del BENCHMARKS["canonical_json_request_received_trusted"]
if "resolution_cache" not in inspect.signature(cra.Runtime).parameters:
    del BENCHMARKS["resolve_5_actions_uncached"], BENCHMARKS["resolve_200_actions_50_policies_uncached"]


def tracing_mode(kwargs: dict[str, Any]) -> str:
    """The tracing mode a runtime built with ``kwargs`` uses (versions without the option: immediate)."""
    probe = cra.Runtime(**kwargs)
    mode = str(getattr(probe, "tracing", "immediate"))
    probe.close()
    return mode


def _worker_args(cmd: list[str], args: Any) -> None:
    if args.tracing:
        cmd.extend(("--tracing", args.tracing))


def main() -> None:
    # 10 worker processes by default (pyperf's is 20): --fast then runs 5, keeping the suite near 2 minutes.
    runner = pyperf.Runner(processes=10, add_cmdline_args=_worker_args)
    runner.argparser.add_argument(
        "--tracing",
        choices=("immediate", "deferred"),
        help="pass tracing= to cra.Runtime (default: the runtime's own default)",
    )
    args = runner.parse_args()
    if args.tracing:
        RUNTIME_KWARGS["tracing"] = args.tracing
    runner.metadata["cra_version"] = cra.__version__
    runner.metadata["cra_tracing"] = tracing_mode(RUNTIME_KWARGS)
    results: list[tuple[str, pyperf.Benchmark, int]] = []
    for name, (func, events) in BENCHMARKS.items():
        bench = runner.bench_time_func(name, func)
        if bench is not None:
            results.append((name, bench, events))
    if runner.args.worker or not results:
        return
    print()
    print("Derived figures (mean, median):")
    for name, bench, events in results:
        mean, median = bench.mean(), bench.median()
        if events:
            print(f"  {name:40s} {events / mean:12,.0f} events/s  (median {events / median:,.0f})")
        else:
            print(f"  {name:40s} {mean * 1e6:10.2f} us/call  (median {median * 1e6:.2f})")


if __name__ == "__main__":
    main()
