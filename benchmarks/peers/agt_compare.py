"""CRA beside Microsoft's Agent Governance Toolkit (AGT), on this machine, in one run.

    .venv/bin/python benchmarks/peers/agt_compare.py            # table
    .venv/bin/python benchmarks/peers/agt_compare.py --json     # one JSON document
    .venv/bin/python benchmarks/peers/agt_compare.py --quick    # 5,000 calls per scenario instead of 20,000

The peer runs in its own venv (``benchmarks/peers/.venv-agt``, created with ``python -m venv`` and filled by
pip on first use; ``--reinstall`` starts it afresh) through ``agt_measure.py``; CRA runs here, in the
project's venv, with the same harness (``agt_measure.measure``: warm-up, ``gc.collect()`` + ``gc.freeze()``,
each call timed on its own, no pacing). If the peer cannot be installed, the reason is printed and the CRA
figures alone are reported (exit 0).

What is compared (see README.md beside this file for what each side does per call):

- policy evaluation: AGT's ``PolicyEngine.evaluate`` (agentmesh) and ``PolicyEvaluator.evaluate``
  (agent_os) decide one action per call, and five in a row for the five actions; CRA's ``resolve`` decides
  all five actions of the 5-action conformance Atlas and records 7 trace events per call;
- audit write: AGT's ``AuditLog.log`` (chained into an in-memory Merkle tree inside the call), alone and with
  a ``FileAuditSink``; CRA's trace emit, deferred (the hot-path append; chaining happens in the background)
  and immediate (chained, hashed and stored inside the call, in ``memory://`` or a JSONL file without fsync).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from agt_measure import measure  # noqa: E402  (the peer's harness, stdlib only: the same timing on both sides)

import cra  # noqa: E402
from cra.bench import machine_info, partial_manifest  # noqa: E402
from cra.trace.tracer import Record  # noqa: E402

VENV = HERE / ".venv-agt"
PEER_PACKAGES = ("agent-governance-toolkit==4.1.0", "agent-governance-toolkit-core==5.0.0")
PAYLOAD = {"policy_id": "allow-read", "result": "allow", "action_id": "resource.get"}

# (label, peer scenario, CRA scenario): ratio = peer p50 / CRA p50.
RATIOS = (
    (
        "policy: AGT agentmesh evaluate (1 action) / CRA resolve (5 actions)",
        "agentmesh_evaluate_1",
        "cra_resolve",
    ),
    ("policy: AGT agentmesh evaluate x5 / CRA resolve", "agentmesh_evaluate_5", "cra_resolve"),
    ("policy: AGT agent_os evaluate (1 action) / CRA resolve", "agent_os_evaluate_1", "cra_resolve"),
    ("policy: AGT agent_os evaluate x5 / CRA resolve", "agent_os_evaluate_5", "cra_resolve"),
    ("audit: AGT AuditLog.log / CRA emit (deferred)", "agentmesh_audit_log", "cra_emit_deferred"),
    ("audit: AGT AuditLog.log / CRA emit (immediate, memory)", "agentmesh_audit_log", "cra_emit_immediate"),
    (
        "audit: AGT AuditLog.log + FileAuditSink / CRA emit (immediate, JSONL)",
        "agentmesh_audit_log_file",
        "cra_emit_immediate_jsonl",
    ),
)


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _peer_importable(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import agentmesh.governance, agent_os.policies"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def ensure_peer(venv: Path, packages: list[str], reinstall: bool, log: Any) -> Path:
    """The peer venv's interpreter, creating the venv and installing AGT first if needed."""
    python = _venv_python(venv)
    if reinstall and venv.exists():
        shutil.rmtree(venv)
    if _peer_importable(python):
        return python
    print(f"installing {' '.join(packages)} into {venv} ...", file=log, flush=True)
    base = shutil.which("python3") or sys.executable
    steps = [
        [base, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *packages],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False, timeout=1800)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
            raise RuntimeError(f"`{' '.join(step[:4])} ...` failed (exit {done.returncode}):\n{tail}")
    if not _peer_importable(python):
        raise RuntimeError("AGT installed, but `import agentmesh.governance, agent_os.policies` fails")
    return python


def measure_peer(python: Path, count: int) -> dict[str, Any]:
    done = subprocess.run(
        [str(python), str(HERE / "agt_measure.py"), "--count", str(count)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"agt_measure.py failed (exit {done.returncode}): {done.stderr.strip()[-800:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _runtime(tracing: str, storage: str = "memory://") -> tuple[cra.Runtime, str]:
    runtime = cra.Runtime(clock=cra.SystemClock(), storage=storage, tracing=tracing)
    runtime.load_atlas(partial_manifest())
    return runtime, runtime.create_session("agent-1", "Manage resources").session_id


def _emit(runtime: cra.Runtime, sid: str, count: int) -> dict[str, float]:
    span = runtime._sessions[sid].span(runtime._new_id())
    emit, records = runtime._tracer.emit, [Record("policy.evaluated", PAYLOAD)]
    return measure(lambda: emit(span, records), count)


def measure_cra(count: int) -> dict[str, Any]:
    """CRA's side, in this process: resolve and emit, with the peer's harness."""
    results: dict[str, Any] = {}
    runtime, sid = _runtime("deferred")
    with runtime:
        resolve = runtime.resolve
        results["cra_resolve"] = measure(lambda: resolve(sid), count)
    runtime, sid = _runtime("deferred")
    with runtime:
        results["cra_emit_deferred"] = _emit(runtime, sid, count)
    runtime, sid = _runtime("immediate")
    with runtime:
        results["cra_emit_immediate"] = _emit(runtime, sid, count)
    directory = tempfile.mkdtemp(prefix="cra-peer-")
    try:
        runtime, sid = _runtime("immediate", f"jsonl://{directory}?fsync=0")
        with runtime:
            results["cra_emit_immediate_jsonl"] = _emit(runtime, sid, count)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return results


def ratios(peer: dict[str, Any], ours: dict[str, Any]) -> dict[str, float]:
    return {
        label: round(peer[p]["p50_us"] / ours[c]["p50_us"], 2)
        for label, p, c in RATIOS
        if p in peer and c in ours and ours[c]["p50_us"] > 0
    }


def _print(report: dict[str, Any]) -> None:
    machine = report["machine"]
    print(f"machine: {machine['cpu']} x{machine['cores']}, python {report['python']}")
    print(f"calls per scenario: {report['count']} (x5 sweeps: {max(1, report['count'] // 5)})")
    peer = report.get("peer")
    if peer is None:
        print(f"peer: not measured: {report['peer_error']}")
    else:
        versions = ", ".join(f"{k} {v}" for k, v in peer["versions"].items())
        print(f"peer: {versions} (python {peer['python']})")
    print()
    print(f"  {'scenario':34s} {'p50 µs':>10s} {'p99 µs':>10s}")
    rows = {**(peer["results"] if peer else {}), **report["cra"]}
    for name, result in rows.items():
        print(f"  {name:34s} {result['p50_us']:10.2f} {result['p99_us']:10.2f}")
    if report["ratios"]:
        print()
        print("ratios of p50 (peer / CRA; above 1 means CRA is faster):")
        for label, value in report["ratios"].items():
            print(f"  {value:8.2f}  {label}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--quick", action="store_true", help="5,000 calls per scenario instead of 20,000")
    parser.add_argument("--count", type=int, help="calls per scenario (overrides --quick)")
    parser.add_argument("--venv", type=Path, default=VENV, help=f"the peer venv (default {VENV})")
    parser.add_argument("--reinstall", action="store_true", help="delete and recreate the peer venv")
    parser.add_argument(
        "--peer-packages",
        nargs="+",
        default=list(PEER_PACKAGES),
        help="what pip installs into the peer venv (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    count = args.count or (5_000 if args.quick else 20_000)
    log = sys.stderr
    report: dict[str, Any] = {
        "cra_version": cra.__version__,
        "python": sys.version.split()[0],
        "machine": machine_info(),
        "count": count,
        "peer": None,
        "peer_error": None,
    }
    try:
        python = ensure_peer(args.venv, args.peer_packages, args.reinstall, log)
        print("measuring the peer ...", file=log, flush=True)
        report["peer"] = measure_peer(python, count)
    except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
        report["peer_error"] = str(exc)
        print(f"peer not measured: {exc}", file=log, flush=True)
    print("measuring CRA ...", file=log, flush=True)
    report["cra"] = measure_cra(count)
    report["ratios"] = ratios(report["peer"]["results"], report["cra"]) if report["peer"] else {}
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
