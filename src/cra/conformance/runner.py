"""Run conformance cases (SPEC 9).

Beyond SPEC 9's ops, this project's own cases may use ``load_atlas`` (``atlas``, ``files?``: load another
Atlas or version mid-case), ``complete`` (``execution``: the ``as`` name of an execute step, ``result?``,
``error?``), ``as`` on execute steps, and a case-level ``unhandled_actions`` list (actions that get no handler,
so executing them answers ``authorized``).

Every case starts a fresh runtime with a manual clock at 2025-01-01T00:00:00Z and immediate tracing, and a
handler returning ``{"ok": true}`` for every action. Requests built from steps are full CARP request objects
(fresh request ids, the clock's timestamp) sent through ``resolve_request`` / ``execute_request``, so the
wire path is what is tested.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .._version import __version__
from ..clock import ManualClock, format_timestamp
from ..errors import CRAError
from ..execution import ExecuteResponse
from ..resolution import Resolution
from ..runtime import Runtime
from ..trace.diff import diff_traces
from ..trace.event import event_hash
from ..trace.verify import verify_chain

__all__ = ["CaseResult", "ConformanceReport", "run_case", "run_directory"]

IMPLEMENTATION = "cra-python"

ApiFactory = Callable[[Runtime], Any]
"""Builds the front end a case's steps go through from the case's runtime."""
START = "2025-01-01T00:00:00Z"


class CaseFailure(Exception):
    """A step's expectation did not hold."""


@dataclass(slots=True)
class CaseResult:
    """One case's outcome: ``passed``, ``failed`` or ``skipped``, with the first failure's explanation."""

    test_id: str
    status: str
    duration_ms: float
    error: str | None = None
    file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "test_id": self.test_id,
            "status": self.status,
            "duration_ms": round(self.duration_ms, 3),
        }
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(slots=True)
class ConformanceReport:
    """All results of a run, and the SPEC 9 JSON report."""

    results: list[CaseResult] = field(default_factory=list)
    duration_ms: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "implementation": IMPLEMENTATION,
            "version": __version__,
            "test_run": {
                "total": len(self.results),
                "passed": self.count("passed"),
                "failed": self.count("failed"),
                "skipped": self.count("skipped"),
                "duration_ms": round(self.duration_ms, 3),
            },
            "results": [r.to_dict() for r in self.results],
        }


def _ok_handler(_parameters: dict[str, Any]) -> dict[str, bool]:
    return {"ok": True}


class _Case:
    def __init__(self, case: Mapping[str, Any], api_factory: ApiFactory | None = None) -> None:
        self.case = case
        self.clock = ManualClock(START)
        self.runtime = Runtime(clock=self.clock, storage="memory://", tracing="immediate")
        # Setup (Atlases, handlers) always goes to the runtime; the steps go through ``api``: the runtime
        # itself, or e.g. an HTTP client of a server that serves this runtime.
        self.api: Any = api_factory(self.runtime) if api_factory is not None else self.runtime
        self.sessions: dict[str, str] = {}
        self.agents: dict[str, str] = {}
        self.resolutions: dict[str, Resolution] = {}
        self.executions: dict[str, ExecuteResponse] = {}
        self.request_counter = 0
        atlases = case.get("atlases") or ([case["atlas"]] if "atlas" in case else [])
        files = case.get("files")
        self.files = files
        self.unhandled = frozenset(case.get("unhandled_actions", ()))
        for manifest in atlases:
            self._load(manifest, files)

    def _load(self, manifest: Mapping[str, Any], files: Mapping[str, str] | None) -> Any:
        atlas = self.runtime.load_atlas(manifest, files=files)
        for action in atlas.actions:
            if action.action_id not in self.unhandled:
                self.runtime.register(action.action_id, _ok_handler)
        return atlas

    def request_id(self) -> str:
        self.request_counter += 1
        return f"00000000-0000-7000-8000-{self.request_counter:012x}"

    def run(self) -> None:
        ops: dict[str, Callable[[Mapping[str, Any]], Any]] = {
            "create_session": self.create_session,
            "resolve": self.resolve,
            "execute": self.execute,
            "approve": self.approve,
            "reject": self.approve,
            "end_session": self.end_session,
            "advance_clock": self.advance_clock,
            "trace": self.trace,
            "validate_request": self.validate_request,
            "validate_atlas": self.validate_atlas,
            "hash_event": self.hash_event,
            "verify_chain": self.verify_chain,
            "diff": self.diff,
            # Extensions for this project's own cases (not in SPEC 9's table):
            "load_atlas": self.load_atlas,
            "complete": self.complete,
        }
        for index, step in enumerate(self.case.get("steps", [])):
            op = step.get("op")
            handler = ops.get(op) if isinstance(op, str) else None
            if handler is None:
                raise CaseFailure(f"step {index}: unknown op {op!r}")
            expect = step.get("expect") or {}
            try:
                outcome = handler(step)
            except CRAError as exc:
                if "error" not in expect:
                    raise CaseFailure(
                        f"step {index} ({op}): unexpected error {exc.code}: {exc.message}"
                    ) from exc
                if exc.code != expect["error"]:
                    raise CaseFailure(
                        f"step {index} ({op}): expected error {expect['error']}, got {exc.code}: "
                        f"{exc.message}"
                    ) from exc
                continue
            try:
                self.check(op, outcome, expect)
            except CaseFailure as exc:
                raise CaseFailure(f"step {index} ({op}): {exc}") from None

    # --- ops ----------------------------------------------------------------------------------------------

    def create_session(self, step: Mapping[str, Any]) -> Any:
        session = self.api.create_session(step["agent_id"], step["goal"], step.get("atlas_ids"))
        if "as" in step:
            self.sessions[step["as"]] = session.session_id
            self.agents[step["as"]] = session.agent_id
        return session

    def _requester(self, name: str) -> dict[str, str]:
        if name not in self.sessions:
            raise CaseFailure(f"no session named {name!r}")
        return {"agent_id": self.agents[name], "session_id": self.sessions[name]}

    def resolve(self, step: Mapping[str, Any]) -> Resolution:
        requester = self._requester(step["session"])
        session = self.api.get_session(requester["session_id"])
        task: dict[str, Any] = {"goal": step.get("goal", session.goal)}
        for key in ("risk_tier", "required_capabilities", "context_hints"):
            if key in step:
                task[key] = step[key]
        request: dict[str, Any] = {
            "carp_version": "1.0",
            "request_id": self.request_id(),
            "timestamp": format_timestamp(self.clock.now_us()),
            "operation": "resolve",
            "requester": requester,
            "task": task,
        }
        if "context" in step:
            request["context"] = step["context"]
        if "atlas_ids" in step:
            request["atlas_ids"] = step["atlas_ids"]
        resolution: Resolution = self.api.resolve_request(request)
        if "as" in step:
            self.resolutions[step["as"]] = resolution
        return resolution

    def execute(self, step: Mapping[str, Any]) -> ExecuteResponse:
        requester = self._requester(step["session"])
        resolution = self.resolutions.get(step["resolution"])
        if resolution is None:
            raise CaseFailure(f"no resolution named {step['resolution']!r}")
        execution: dict[str, Any] = {
            "resolution_id": resolution.resolution_id,
            "action_id": step["action_id"],
            "parameters": step.get("parameters", {}),
        }
        if "idempotency_key" in step:
            execution["idempotency_key"] = step["idempotency_key"]
        session = self.api.get_session(requester["session_id"])
        response: ExecuteResponse = self.api.execute_request(
            {
                "carp_version": "1.0",
                "request_id": self.request_id(),
                "timestamp": format_timestamp(self.clock.now_us()),
                "operation": "execute",
                "requester": requester,
                "task": {"goal": session.goal},
                "execution": execution,
            }
        )
        if "as" in step:
            self.executions[step["as"]] = response
        return response

    def load_atlas(self, step: Mapping[str, Any]) -> Any:
        """Extension: load another Atlas (or a new version of one) mid-case."""
        return self._load(step["atlas"], step.get("files", self.files))

    def complete(self, step: Mapping[str, Any]) -> ExecuteResponse:
        """Extension: report the outcome of an ``authorized`` execution named with ``as``."""
        execution = self.executions.get(step["execution"])
        if execution is None:
            raise CaseFailure(f"no execution named {step['execution']!r}")
        completed: ExecuteResponse = self.api.complete(
            execution.execution_id, result=step.get("result"), error=step.get("error")
        )
        return completed

    def approve(self, step: Mapping[str, Any]) -> Any:
        resolution = self.resolutions.get(step["resolution"])
        if resolution is None:
            raise CaseFailure(f"no resolution named {step['resolution']!r}")
        pending = self.api.approvals(resolution.session_id)
        mine = [a for a in pending if a.resolution_id == resolution.resolution_id]
        if not mine:
            raise CaseFailure(f"resolution {step['resolution']!r} has no pending approval")
        decide = self.api.approve if step["op"] == "approve" else self.api.reject
        return decide(mine[-1].approval_id, step.get("approver", "conformance"), step.get("note"))

    def end_session(self, step: Mapping[str, Any]) -> Any:
        requester = self._requester(step["session"])
        return self.api.end_session(requester["session_id"], step.get("reason", "completed"))

    def advance_clock(self, step: Mapping[str, Any]) -> None:
        self.clock.advance(step["seconds"])

    def trace(self, step: Mapping[str, Any]) -> list[dict[str, Any]]:
        requester = self._requester(step["session"])
        return [e.to_dict() for e in self.api.get_trace(requester["session_id"])]

    def validate_request(self, step: Mapping[str, Any]) -> Any:
        return self.api.validate_request(step["request"])

    def validate_atlas(self, step: Mapping[str, Any]) -> Any:
        from ..atlas import validate_atlas

        return validate_atlas(step["atlas"], files=step.get("files") or {})

    def hash_event(self, step: Mapping[str, Any]) -> str:
        return event_hash(step["event"])

    def verify_chain(self, step: Mapping[str, Any]) -> Any:
        return verify_chain(step["events"])

    def diff(self, step: Mapping[str, Any]) -> Any:
        return diff_traces(step["a"], step["b"])

    # --- expectations -------------------------------------------------------------------------------------

    def check(self, op: str, outcome: Any, expect: Mapping[str, Any]) -> None:
        # `error` is an error code everywhere except execute (also a denial code) and verify_chain (a field).
        if "error" in expect and op not in ("execute", "complete", "verify_chain"):
            raise CaseFailure(f"expected error {expect['error']}, but the step succeeded")
        for key, want in expect.items():
            got = self.actual(op, outcome, key)
            if key in ("denied",):
                _match_entries(got, want, key)
            elif key == "payloads":
                for index, partial in want.items():
                    i = int(index)
                    if i >= len(outcome):
                        raise CaseFailure(f"payloads: no event {i} (trace has {len(outcome)})")
                    _match_partial(outcome[i]["payload"], partial, f"payloads[{i}]")
            elif key == "differences":
                _match_entries(got, want, key)
            elif key == "error_paths":
                if sorted(got) != sorted(want):
                    raise CaseFailure(f"error_paths: expected {want}, got {got}")
            elif key == "result":
                _match_partial(got, want, "result") if isinstance(want, dict) else _equal(got, want, key)
            else:
                _equal(got, want, key)

    def actual(self, op: str, outcome: Any, key: str) -> Any:
        """The value an expect key is compared with, for the op that produced ``outcome``."""
        if op == "resolve":
            return _resolution_value(outcome, key)
        if op in ("execute", "complete"):
            if key == "status":
                return outcome.status
            if key == "error":
                return outcome.error_code
            if key == "result":
                return outcome.result
        elif op == "trace":
            if key == "event_types":
                return [event["event_type"] for event in outcome]
            if key == "payloads":
                return None
            if key == "valid":
                return verify_chain(outcome).valid
        elif op in ("validate_request", "validate_atlas"):
            if key == "valid":
                return outcome.valid
            if key == "error_paths":
                return outcome.error_paths
        elif op == "hash_event":
            if key == "event_hash":
                return outcome
        elif op == "verify_chain":
            if key in ("valid", "error", "error_at", "sequence"):
                return getattr(outcome, key)
        elif op == "diff":
            if key == "verdict":
                return outcome.verdict
            if key == "differences":
                return [d.to_dict() for d in outcome.differences]
        return _unknown(key)


def _resolution_value(r: Resolution, key: str) -> Any:
    if key == "decision":
        return r.decision_type
    if key == "reason":
        return r.decision_reason
    if key == "allowed":
        return r.allowed_ids
    if key == "denied":
        return [d.to_dict() for d in r.denied_actions]
    if key == "requires_confirmation":
        return [a.action_id for a in r.allowed_actions if a.requires_confirmation]
    if key == "context_blocks":
        return [b.block_id for b in r.context_blocks]
    if key == "constraints":
        return [c["type"] for c in r.constraints]
    if key == "ttl_seconds":
        return r.ttl_seconds
    return _unknown(key)


def _unknown(key: str) -> Any:
    raise CaseFailure(f"unknown expect key {key!r} for this op")


def _equal(got: Any, want: Any, key: str) -> None:
    if got != want:
        raise CaseFailure(f"{key}: expected {want!r}, got {got!r}")


def _match_partial(got: Any, want: Mapping[str, Any], key: str) -> None:
    if not isinstance(got, Mapping):
        raise CaseFailure(f"{key}: expected an object, got {got!r}")
    for k, v in want.items():
        if k not in got or got[k] != v:
            raise CaseFailure(f"{key}.{k}: expected {v!r}, got {got.get(k)!r}")


def _match_entries(got: list[Any], want: list[Mapping[str, Any]], key: str) -> None:
    if len(got) != len(want):
        raise CaseFailure(f"{key}: expected {len(want)} entries {want!r}, got {len(got)}: {got!r}")
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        _match_partial(g, w, f"{key}[{i}]")


def run_case(
    case: Mapping[str, Any], file: str | None = None, *, api_factory: ApiFactory | None = None
) -> CaseResult:
    """Run one case on a fresh runtime; never raises (a crash is a failed case).

    ``api_factory(runtime)`` may return another front end for the steps (an HTTP client of a server over
    that runtime, say): the case then checks that front end, with the runtime's clock and handlers.
    """
    test_id = str(case.get("test_id", file or "?"))
    start = time.perf_counter()
    if case.get("skip"):
        return CaseResult(test_id, "skipped", 0.0, str(case.get("skip")), file)
    try:
        _Case(case, api_factory).run()
    except CaseFailure as exc:
        return CaseResult(test_id, "failed", (time.perf_counter() - start) * 1000, str(exc), file)
    except CRAError as exc:
        return CaseResult(
            test_id,
            "failed",
            (time.perf_counter() - start) * 1000,
            f"setup failed: {exc.code}: {exc.message}",
            file,
        )
    except Exception as exc:  # a crash in a case must not stop the run
        return CaseResult(
            test_id,
            "failed",
            (time.perf_counter() - start) * 1000,
            f"crashed: {type(exc).__name__}: {exc}",
            file,
        )
    return CaseResult(test_id, "passed", (time.perf_counter() - start) * 1000, None, file)


def run_directory(
    directory: str | Path, *, on_result: Callable[[CaseResult], None] | None = None
) -> ConformanceReport:
    """Run every ``*.json`` case in a directory (sorted by name). A file that is not a case is a failure."""
    start = time.perf_counter()
    report = ConformanceReport()
    for path in sorted(Path(directory).glob("*.json")):
        try:
            case = orjson.loads(path.read_bytes())
            if not isinstance(case, dict):
                raise ValueError("a case must be a JSON object")
            result = run_case(case, path.name)
        except (ValueError, OSError) as exc:
            result = CaseResult(path.stem, "failed", 0.0, f"cannot read case: {exc}", path.name)
        report.results.append(result)
        if on_result is not None:
            on_result(result)
    report.duration_ms = (time.perf_counter() - start) * 1000
    return report
