"""``cra bench``: the SPEC 12 performance figures of this build, measured on this machine.

``run_bench()`` builds its own runtimes (system clock, ``memory://`` storage, deferred tracing), times every
call on its own with ``time.perf_counter_ns`` after a warm-up, and returns the figures beside the SPEC 12
targets. The Atlases are built in (the 5-action conformance Atlas and a generated 200-action / 50-policy one),
so the package reads no test file. Performance is measured here and in ``benchmarks/``, never asserted by
unit tests.

Method, per figure:

- ``resolve_p50_us`` / ``resolve_p99_us``: ``resolve`` on the 5-action Atlas, paced at 20,000 resolves/s
  (busy-waiting on ``perf_counter_ns`` between calls) while the background trace processor chains and stores
  what the calls emit;
- ``resolve_200_p50_us``: the same on the 200 / 50 Atlas, paced at 500 resolves/s (about 100k events/s, the
  processor's own target);
- ``emit_p50_us``: one record appended to the deferred processor's buffer (the hot-path part of tracing);
- ``execute_p50_us``: ``execute`` of ``resource.get`` with parameter validation and a trivial handler;
- ``chain_write_events_per_s``: events emitted through the processor and flushed into SQLite (or JSONL
  without fsync where this build has no SQLite storage), per second of wall time;
- ``verify_events_per_s``: ``verify_chain`` over that chain read back;
- ``rss_mb``: the process's peak resident memory. Its target is SPEC's ≤ 2 KiB per stored event, checked
  on the Python memory held per event stored in ``memory://`` (``details.memory``, see
  ``memory_per_event``), measured first in an untimed run under ``tracemalloc``.

Objects made before the timed runs are moved out of the collector's reach (``gc.freeze()``), as a server
would after start-up; the collector stays enabled, so its pauses show in the tails as they would for a caller.
"""

from __future__ import annotations

import copy
import gc
import os
import platform
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from typing import Any, Final

from ._version import __version__
from .clock import SystemClock
from .runtime import Runtime
from .trace.storage import open_storage
from .trace.tracer import Record
from .trace.verify import verify_chain

__all__ = [
    "METRICS",
    "PARTIAL_ATLAS",
    "TARGETS",
    "generated_manifest",
    "machine_info",
    "measure",
    "partial_manifest",
    "memory_per_event",
    "run_bench",
    "timer_overhead_ns",
]

METRICS: Final = (
    "resolve_p50_us",
    "resolve_p99_us",
    "resolve_200_p50_us",
    "emit_p50_us",
    "execute_p50_us",
    "chain_write_events_per_s",
    "verify_events_per_s",
    "rss_mb",
)
"""The numeric figures, in report order (``metrics`` also holds ``chain_write_backend``)."""

TARGETS: Final[dict[str, dict[str, float]]] = {
    "resolve_p50_us": {"max": 5.0},
    "resolve_p99_us": {"max": 20.0},
    "resolve_200_p50_us": {"max": 50.0},
    "emit_p50_us": {"max": 0.5},
    "execute_p50_us": {"max": 20.0},
    "chain_write_events_per_s": {"min": 100_000.0},
    "verify_events_per_s": {"min": 300_000.0},
    "rss_mb": {"max_bytes_per_event": 2048.0},
}
"""SPEC 12's targets: ``max`` (at most), ``min`` (at least), or for memory the bytes per stored event."""

# Counts of timed calls: (full run, --quick run). ``scale`` multiplies them (tests use a small scale).
_COUNTS: Final[dict[str, tuple[int, int]]] = {
    "resolve": (50_000, 5_000),
    "resolve_200": (2_000, 300),
    "emit": (50_000, 10_000),
    "execute": (20_000, 3_000),
    "chain": (100_000, 20_000),
    "memory_resolves": (5_000, 1_000),
    "memory_emits": (20_000, 5_000),
}
_RESOLVE_RATE: Final = 20_000.0  # resolves/s on the 5-action Atlas (SPEC 12: "a realistic load")
_RESOLVE_200_RATE: Final = 500.0  # resolves/s on the 200-action Atlas: ~100k events/s for the processor
_WARMUP: Final = 0.05  # warm-up calls, as a fraction of the timed ones

PARTIAL_ATLAS: Final[dict[str, Any]] = {
    "atlas_version": "1.0",
    "atlas_id": "org.example.resources",
    "version": "1.0.0",
    "name": "Resources",
    "description": "Read, write and delete resources",
    "capabilities": [
        {"capability_id": "resource.read", "name": "Read", "actions": ["resource.get", "resource.list"]},
        {
            "capability_id": "resource.write",
            "name": "Write",
            "actions": ["resource.create", "resource.update"],
        },
    ],
    "policies": [
        {"policy_id": "allow-read", "type": "allow", "actions": ["resource.get", "resource.list"]},
        {"policy_id": "allow-write", "type": "allow", "actions": ["resource.create", "resource.update"]},
        {
            "policy_id": "deny-delete",
            "type": "deny",
            "actions": ["resource.delete"],
            "priority": 100,
            "parameters": {"reason": "Deletion is not permitted here"},
        },
    ],
    "actions": [
        {
            "action_id": "resource.get",
            "name": "Get",
            "description": "Get one resource",
            "risk_tier": "low",
            "idempotent": True,
            "parameters_schema": {
                "type": "object",
                "properties": {"resource_id": {"type": "string"}},
                "required": ["resource_id"],
            },
        },
        {
            "action_id": "resource.list",
            "name": "List",
            "description": "List resources",
            "idempotent": True,
            "parameters_schema": {
                "type": "object",
                "properties": {"limit": {"type": "integer", "minimum": 1, "maximum": 100}},
            },
        },
        {
            "action_id": "resource.create",
            "name": "Create",
            "description": "Create a resource",
            "risk_tier": "medium",
            "parameters_schema": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "data": {"type": "object"}},
                "required": ["name"],
            },
        },
        {
            "action_id": "resource.update",
            "name": "Update",
            "description": "Update a resource",
            "risk_tier": "medium",
            "parameters_schema": {
                "type": "object",
                "properties": {"resource_id": {"type": "string"}, "name": {"type": "string"}},
                "required": ["resource_id"],
            },
        },
        {
            "action_id": "resource.delete",
            "name": "Delete",
            "description": "Delete a resource",
            "risk_tier": "high",
            "parameters_schema": {
                "type": "object",
                "properties": {"resource_id": {"type": "string"}},
                "required": ["resource_id"],
            },
        },
    ],
}
"""The manifest of the conformance case ``resolve.partial`` (SPEC 12's "5-action conformance Atlas"): four
actions allowed, ``resource.delete`` denied. A test keeps it equal to the case file."""


def partial_manifest() -> dict[str, Any]:
    """A fresh copy of ``PARTIAL_ATLAS``."""
    return copy.deepcopy(PARTIAL_ATLAS)


# --- the generated 200-action / 50-policy Atlas ----------------------------------------------------------
# The same arithmetic as benchmarks/atlases.py (a test keeps them equal): 20 domains x 10 verbs.

_DOMAIN_NAMES: Final = (
    "billing crm ticket invoice order catalog inventory shipping payment refund "
    "user group report audit document calendar mail chat deploy secret"
)
_DOMAINS: Final = tuple(_DOMAIN_NAMES.split())
_RISK: Final = {  # verb -> risk tier, in the verbs' order
    **dict.fromkeys(("get", "list", "search"), "low"),
    **dict.fromkeys(("create", "update"), "medium"),
    **dict.fromkeys(("delete", "export", "archive"), "high"),
    "approve": "critical",
    "notify": "medium",
}
_VERBS: Final = tuple(_RISK)
_IDENT: Final = {"type": "string", "minLength": 1, "maxLength": 64}


def _schema(verb: str, domain: str) -> dict[str, Any]:
    """A parameters_schema typical of the verb."""
    key = f"{domain}_id"
    limit = {"type": "integer", "minimum": 1, "maximum": 100}
    if verb in ("get", "delete", "archive"):
        props: dict[str, Any] = {key: dict(_IDENT)}
        if verb == "delete":
            props["reason"] = {"type": "string", "maxLength": 500}
        return {"type": "object", "properties": props, "required": [key]}
    if verb == "list":
        return {"type": "object", "properties": {"limit": limit, "cursor": {"type": "string"}}}
    if verb == "search":
        props = {
            "query": {"type": "string", "minLength": 1},
            "filters": {"type": "object", "additionalProperties": {"type": "string"}},
            "limit": dict(limit),
        }
        return {"type": "object", "properties": props, "required": ["query"]}
    if verb in ("create", "update"):
        props = {
            "name": {"type": "string", "minLength": 1},
            "data": {"type": "object"},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
        }
        if verb == "update":
            props[key] = dict(_IDENT)
        return {"type": "object", "properties": props, "required": [key if verb == "update" else "name"]}
    if verb == "export":
        props = {"format": {"enum": ["csv", "json"]}, "since": {"type": "string"}}
        return {"type": "object", "properties": props, "required": ["format"]}
    if verb == "approve":
        props = {key: dict(_IDENT), "comment": {"type": "string"}}
        return {"type": "object", "properties": props, "required": [key]}
    props = {"to": {"type": "string"}, "message": {"type": "string", "maxLength": 2000}}  # notify
    return {"type": "object", "properties": props, "required": ["to", "message"]}


def _generated_actions() -> list[dict[str, Any]]:
    actions = []
    for d, domain in enumerate(_DOMAINS):
        for verb in _VERBS:
            action: dict[str, Any] = {
                "action_id": f"{domain}.{verb}",
                "name": f"{domain.title()} {verb}",
                "description": f"{verb.title()} {domain} records",
                "risk_tier": _RISK[verb],
                "idempotent": verb in ("get", "list", "search"),
                "parameters_schema": _schema(verb, domain),
            }
            if verb == "notify" and d % 4 == 0:
                action["rate_limit"] = {"max_calls": 1000, "window_seconds": 60}
            actions.append(action)
    return actions


def _generated_policies() -> list[dict[str, Any]]:
    """50 policies: 14 allow, 12 deny with conditions, 10 require_approval, 8 rate limits, 6 budgets."""
    out: list[dict[str, Any]] = []

    def add(policy_id: str, ptype: str, actions: list[str], **extra: Any) -> None:
        out.append({"policy_id": policy_id, "type": ptype, "actions": actions, **extra})

    high = {"risk_tiers": ["high", "critical"]}
    for verb in ("get", "list", "search"):
        add(f"allow-{verb}", "allow", [f"*.{verb}"])
    for domain in _DOMAINS[:10]:
        add(f"allow-{domain}", "allow", [f"{domain}.*"])
    add("allow-notify-agents", "allow", ["*.notify"], conditions={"agents": ["agent-*", "bot-*"]})
    for verb in ("delete", "export"):
        add(
            f"deny-{verb}-critical",
            "deny",
            [f"*.{verb}"],
            priority=100,
            conditions={"risk_tiers": ["critical"]},
        )
    for domain in _DOMAINS[:5]:
        add(
            f"deny-{domain}-export-eu",
            "deny",
            [f"{domain}.export"],
            priority=50,
            conditions={"context_matches": {"region": "eu"}},
            parameters={"reason": "Exports of EU data are not permitted"},
        )
    add(
        "deny-archive-agents",
        "deny",
        ["*.archive"],
        priority=50,
        conditions={"agents": ["agent-*", "untrusted-*"]},
        parameters={"reason": "Automated agents may not archive"},
    )
    for domain in _DOMAINS[5:8]:
        add(
            f"deny-{domain}-delete-prod",
            "deny",
            [f"{domain}.delete"],
            priority=50,
            conditions={"context_matches": {"env": "prod"}},
        )
    add(
        "deny-approve-contractors",
        "deny",
        ["*.approve"],
        priority=10,
        conditions={"agents": ["contractor-*"], "risk_tiers": ["high", "critical"]},
        parameters={"reason": "Contractors cannot approve"},
    )
    add("approve-delete", "require_approval", ["*.delete"], conditions=dict(high))
    add("approve-archive", "require_approval", ["*.archive"], conditions=dict(high))
    for domain in _DOMAINS[:5]:
        add(f"approve-{domain}-export", "require_approval", [f"{domain}.export"], conditions=dict(high))
    for domain in _DOMAINS[8:11]:
        add(
            f"approve-{domain}-critical",
            "require_approval",
            [f"{domain}.*"],
            conditions={"risk_tiers": ["critical"]},
        )
    scopes = ("session", "agent", "global")
    for i, domain in enumerate(_DOMAINS[4:12]):
        params = {"max_calls": 100 * (i + 1), "window_seconds": 60, "scope": scopes[i % 3]}
        add(f"rate-{domain}", "rate_limit", [f"{domain}.*"], parameters=params)
    for i, domain in enumerate(_DOMAINS[12:18]):
        costs = {"*.export": 5, "*.create": 2, "*.update": 1.5}
        params = {"max_cost": 10_000.0, "period_seconds": 3600, "scope": scopes[i % 3], "costs": costs}
        add(f"budget-{domain}", "budget", [f"{domain}.*"], parameters=params)
    return out


def generated_manifest() -> dict[str, Any]:
    """The synthetic Atlas: 200 actions (20 domains x 10 verbs), 20 capabilities, 50 policies. A plain
    low-risk resolve by ``agent-1`` allows 172 actions (28 needing approval) and denies 28."""
    actions = _generated_actions()
    capabilities = [
        {
            "capability_id": domain,
            "name": domain.title(),
            "actions": [f"{domain}.{verb}" for verb in _VERBS],
        }
        for domain in _DOMAINS
    ]
    return {
        "atlas_version": "1.0",
        "atlas_id": "org.example.bench",
        "version": "1.0.0",
        "name": "Benchmark",
        "description": f"Generated benchmark Atlas: {len(actions)} actions, 50 policies",
        "capabilities": capabilities,
        "policies": _generated_policies(),
        "actions": actions,
    }


# --- measuring -------------------------------------------------------------------------------------------


def _percentile(ordered: list[int], pct: float) -> int:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def measure(
    call: Callable[[], object], count: int, *, rate: float = 0.0, warmup: int | None = None
) -> dict[str, float]:
    """Time ``count`` calls one by one (after ``warmup`` untimed calls, default 5 %).

    With ``rate`` (calls per second) a call starts at most that often: the loop busy-waits on
    ``perf_counter_ns`` until the next start time and never bursts to catch up after a slow call.
    Returns ``p50_us``, ``p99_us``, ``max_us``, ``mean_us``, ``count`` and ``calls_per_s`` (achieved).
    """
    clock = time.perf_counter_ns
    for _ in range(max(1, int(count * _WARMUP)) if warmup is None else warmup):
        call()
    interval = int(1e9 / rate) if rate > 0 else 0
    samples = [0] * count
    started = next_start = clock()
    for i in range(count):
        if interval:
            while clock() < next_start:
                pass
        t0 = clock()
        call()
        t1 = clock()
        samples[i] = t1 - t0
        if interval:
            next_start = max(next_start + interval, t1)
    wall = clock() - started
    samples.sort()
    return {
        "count": count,
        "p50_us": round(_percentile(samples, 50) / 1000, 3),
        "p99_us": round(_percentile(samples, 99) / 1000, 3),
        "max_us": round(samples[-1] / 1000, 3),
        "mean_us": round(sum(samples) / count / 1000, 3),
        "calls_per_s": round(count / (wall / 1e9)) if wall else 0,
    }


def _runtime(manifest: dict[str, Any], storage: str = "memory://") -> Runtime:
    runtime = Runtime(clock=SystemClock(), storage=storage, tracing="deferred")
    runtime.load_atlas(manifest)
    return runtime


def _session(runtime: Runtime) -> str:
    return runtime.create_session("agent-1", "Manage resources").session_id


def _settle() -> None:
    """Collect, then move every object made so far (Atlases, runtimes, earlier runs) out of the collector's
    reach, as a long-running process would after start-up."""
    gc.collect()
    gc.freeze()


def _stored(runtime: Runtime) -> dict[str, Any]:
    stats = runtime.trace_stats()
    return {"events_stored": stats["written"], "trace_dropped": stats["dropped"]}


def memory_per_event(resolves: int, emits: int) -> dict[str, int]:
    """Bytes of Python memory held per stored event in ``memory://`` (``tracemalloc``, untimed).

    ``resolve``: events of ``resolves`` resolves on the 5-action Atlas, including what each resolve keeps
    besides its events (its resolution state), so an upper bound; ``emit``: ``emits`` single events, each with
    a payload of its own. ``memory_bytes_per_event`` is the worse of the two.
    """
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        out: dict[str, int] = {}
        with _runtime(partial_manifest()) as runtime:
            sid = _session(runtime)
            runtime.resolve(sid)  # the plan is cached from here on, as it is for a working session
            runtime.flush()
            gc.collect()
            before, written = tracemalloc.get_traced_memory()[0], runtime.trace_stats()["written"]
            for _ in range(resolves):
                runtime.resolve(sid)
            runtime.flush()
            gc.collect()
            events = runtime.trace_stats()["written"] - written
            out["resolve"] = round((tracemalloc.get_traced_memory()[0] - before) / events)
            span = runtime._sessions[sid].span(runtime._new_id())
            before = tracemalloc.get_traced_memory()[0]
            for i in range(emits):
                payload = {"policy_id": "allow-read", "result": "allow", "action_id": f"resource.{i % 5}"}
                runtime._tracer.emit(span, [Record("policy.evaluated", payload)])
            runtime.flush()
            gc.collect()
            out["emit"] = round((tracemalloc.get_traced_memory()[0] - before) / emits)
        out["memory_bytes_per_event"] = max(out["resolve"], out["emit"])
        return out
    finally:
        if not was_tracing:
            tracemalloc.stop()


def timer_overhead_ns(samples: int = 50_000) -> int:
    """The median cost of two back-to-back ``perf_counter_ns`` calls, which every timed sample includes."""
    clock = time.perf_counter_ns
    deltas = [0] * samples
    for i in range(samples):
        t0 = clock()
        deltas[i] = clock() - t0
    deltas.sort()
    return deltas[samples // 2]


def _peak_rss_mb() -> float:
    try:
        import resource  # Unix only
    except ImportError:
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def _bench_resolve(
    manifest: dict[str, Any], count: int, rate: float
) -> tuple[dict[str, float], dict[str, Any]]:
    runtime = _runtime(manifest)
    try:
        sid = _session(runtime)
        resolve = runtime.resolve
        runtime.flush()
        _settle()
        stored_before = runtime.trace_stats()["written"]
        result = measure(lambda: resolve(sid), count, rate=rate)
        pressure = runtime.trace_stats()["pressure"]
        runtime.flush()
        extra = _stored(runtime)
        calls = count + max(1, int(count * _WARMUP))
        extra["events_per_call"] = round((extra["events_stored"] - stored_before) / calls, 1)
        extra["trace_pressure_at_end"] = round(pressure, 3)
        return result, extra
    finally:
        runtime.close()


def _bench_emit(count: int) -> tuple[dict[str, float], dict[str, Any]]:
    """One record per emit (the same payload each time)."""
    runtime = _runtime(partial_manifest())
    try:
        sid = _session(runtime)
        span = runtime._sessions[sid].span(runtime._new_id())
        emit = runtime._tracer.emit
        payload = {"policy_id": "allow-read", "result": "allow", "action_id": "resource.get"}
        records = [Record("policy.evaluated", payload)]
        runtime.flush()
        _settle()
        result = measure(lambda: emit(span, records), count)
        runtime.flush()
        return result, _stored(runtime)
    finally:
        runtime.close()


def _bench_execute(count: int) -> dict[str, float]:
    runtime = _runtime(partial_manifest())
    try:
        runtime.register("resource.get", lambda params: {"resource_id": params["resource_id"], "found": True})
        sid = _session(runtime)
        rid = runtime.resolve(sid).resolution_id
        execute = runtime.execute
        params = {"resource_id": "r-1"}
        runtime.flush()
        _settle()
        return measure(lambda: execute(sid, rid, "resource.get", params), count)
    finally:
        runtime.close()


def _template_records() -> list[Record]:
    """The records of one real resolve (7 events) and one real execute (3 events) on the 5-action Atlas."""
    with _runtime(partial_manifest()) as runtime:
        runtime.register("resource.get", lambda params: {"resource_id": params["resource_id"]})
        sid = _session(runtime)
        runtime.execute(sid, runtime.resolve(sid).resolution_id, "resource.get", {"resource_id": "r-1"})
        return [Record(e.event_type, dict(e.payload)) for e in runtime.get_trace(sid)[1:]]


def _storage_url(directory: str) -> tuple[str, str]:
    """SQLite where this build has it (``sqlite://`` in ``open_storage``), else JSONL without fsync."""
    url = f"sqlite:///{directory}/bench.db"
    try:
        open_storage(url).close()
    except ValueError:  # unknown scheme
        return f"jsonl://{directory}?fsync=0", "jsonl"
    return url, "sqlite"


def _bench_chain(count: int, storage_dir: str | None) -> tuple[dict[str, float], str, dict[str, Any]]:
    directory = tempfile.mkdtemp(prefix="cra-bench-", dir=storage_dir)
    try:
        url, backend = _storage_url(directory)
        template = _template_records()
        batch = template * 10  # 100 records per emit, a few operations' worth
        emits = max(1, count // len(batch))
        runtime = _runtime(partial_manifest(), storage=url)
        try:
            sid = _session(runtime)
            state = runtime._sessions[sid]
            emit, new_id = runtime._tracer.emit, runtime._new_id
            spans = [state.span(new_id()) for _ in range(emits)]
            runtime.flush()
            _settle()
            t0 = time.perf_counter_ns()
            for span in spans:
                emit(span, batch)
            runtime.flush()
            wall = time.perf_counter_ns() - t0
            written = emits * len(batch)
            t0 = time.perf_counter_ns()
            events = runtime.storage.read(sid)
            read_s = (time.perf_counter_ns() - t0) / 1e9
            t0 = time.perf_counter_ns()
            verdict = verify_chain(events)
            verify_s = (time.perf_counter_ns() - t0) / 1e9
        finally:
            runtime.close()
        if not verdict.valid or verdict.event_count != written + 1:
            raise RuntimeError(f"the benchmark chain did not verify: {verdict.to_dict()}")
        figures = {
            "chain_write_events_per_s": written / (wall / 1e9),
            "verify_events_per_s": verdict.event_count / verify_s,
        }
        extra = {"events": written, "read_back_events_per_s": round(verdict.event_count / read_s)}
        return figures, backend, extra
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def machine_info() -> dict[str, Any]:
    """CPU model and core count."""
    model = platform.processor() or platform.machine() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count() or 1, "system": platform.system()}


def _met(key: str, value: float, per_event: int | None) -> bool:
    target = TARGETS[key]
    if "max" in target:
        return value <= target["max"]
    if "min" in target:
        return value >= target["min"]
    return per_event is not None and per_event <= target["max_bytes_per_event"]


def run_bench(*, quick: bool = False, storage_dir: str | None = None, scale: float = 1.0) -> dict[str, Any]:
    """Measure SPEC 12's figures (see the module docstring); ``quick`` runs fewer calls, ``scale`` multiplies
    every count (tests use a small one); ``storage_dir`` is where the SQLite/JSONL chain is written (a
    temporary directory under it, removed afterwards).

    Returns ``{"version", "python", "machine", "metrics", "targets", "met", "details"}``.
    """
    if not scale > 0:
        raise ValueError("scale must be positive")
    n = {name: max(20, int(counts[1 if quick else 0] * scale)) for name, counts in _COUNTS.items()}
    memory = memory_per_event(n["memory_resolves"], n["memory_emits"])  # first, untimed (tracemalloc is slow)
    try:
        resolve, resolve_extra = _bench_resolve(partial_manifest(), n["resolve"], _RESOLVE_RATE)
        resolve_200, resolve_200_extra = _bench_resolve(
            generated_manifest(), n["resolve_200"], _RESOLVE_200_RATE
        )
        emit, emit_extra = _bench_emit(n["emit"])
        execute = _bench_execute(n["execute"])
        chain, backend, chain_extra = _bench_chain(n["chain"], storage_dir)
    finally:
        gc.unfreeze()
        gc.collect()
    per_event = memory["memory_bytes_per_event"]
    metrics: dict[str, Any] = {
        "resolve_p50_us": resolve["p50_us"],
        "resolve_p99_us": resolve["p99_us"],
        "resolve_200_p50_us": resolve_200["p50_us"],
        "emit_p50_us": emit["p50_us"],
        "execute_p50_us": execute["p50_us"],
        "chain_write_events_per_s": round(chain["chain_write_events_per_s"]),
        "verify_events_per_s": round(chain["verify_events_per_s"]),
        "rss_mb": round(_peak_rss_mb(), 1),
        "chain_write_backend": backend,
    }
    details = {
        "resolve": {**resolve, **resolve_extra, "target_rate": _RESOLVE_RATE},
        "resolve_200": {**resolve_200, **resolve_200_extra, "target_rate": _RESOLVE_200_RATE},
        "emit": {**emit, **emit_extra},
        "execute": execute,
        "chain_write": {**chain_extra, "backend": backend},
        "memory": memory,
        "timer_overhead_ns": timer_overhead_ns(),
        "tracing": "deferred",
        "storage": "memory://",
        "quick": quick,
    }
    return {
        "version": __version__,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "machine": machine_info(),
        "metrics": metrics,
        "targets": {key: dict(TARGETS[key]) for key in METRICS},
        "met": {key: _met(key, float(metrics[key]), per_event) for key in METRICS},
        "details": details,
    }
