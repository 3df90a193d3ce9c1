"""Measure Microsoft's Agent Governance Toolkit (AGT) inside its own venv; prints one JSON document.

Run by ``agt_compare.py`` with the peer venv's interpreter (it needs only the standard library and AGT):

    benchmarks/peers/.venv-agt/bin/python benchmarks/peers/agt_measure.py --count 20000

The policy is the equivalent of the 5-action conformance Atlas (``resource.get/list/create/update``
allowed, ``resource.delete`` denied, default deny), written for AGT's two policy engines:

- ``agentmesh.governance.PolicyEngine`` (YAML/JSON policies with condition expressions);
- ``agent_os.policies.PolicyEvaluator`` (``PolicyDocument`` rules with field/operator conditions).

Audit writes use ``agentmesh.governance.AuditLog.log`` (entries hash-chained into an in-memory Merkle tree
before the call returns), alone and with a ``FileAuditSink`` (also HMAC-signed and appended to a JSONL file).

Every scenario uses the same harness as the CRA side of agt_compare.py: a warm-up (5 %), ``gc.collect()``
then ``gc.freeze()``, then each call timed on its own with ``time.perf_counter_ns``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

ALLOWED = ("resource.get", "resource.list", "resource.create", "resource.update")
ACTIONS = (*ALLOWED, "resource.delete")
AGENT = "did:example:agent-1"


def measure(call: Callable[[], object], count: int) -> dict[str, float]:
    """Warm up, collect and freeze, then time ``count`` calls one by one (microseconds)."""
    for _ in range(max(1, count // 20)):
        call()
    gc.collect()
    gc.freeze()
    clock = time.perf_counter_ns
    samples = [0] * count
    for i in range(count):
        t0 = clock()
        call()
        samples[i] = clock() - t0
    gc.unfreeze()
    samples.sort()
    return {
        "count": count,
        "p50_us": round(samples[count // 2] / 1000, 3),
        "p99_us": round(samples[min(count - 1, -(-count * 99 // 100) - 1)] / 1000, 3),
        "mean_us": round(sum(samples) / count / 1000, 3),
    }


def agentmesh_engine() -> Any:
    from agentmesh.governance import Policy, PolicyEngine, PolicyRule

    allowed = ", ".join(f"'{a}'" for a in ALLOWED)
    policy = Policy(
        name="resources",
        agents=["*"],
        default_action="deny",
        rules=[
            PolicyRule(
                name="deny-delete",
                condition="action.type == 'resource.delete'",
                action="deny",
                priority=100,
            ),
            PolicyRule(name="allow-read-write", condition=f"action.type in [{allowed}]", action="allow"),
        ],
    )
    engine = PolicyEngine()
    engine.load_policy(policy)
    return engine


def agent_os_evaluator() -> Any:
    from agent_os.policies import PolicyEvaluator
    from agent_os.policies.schema import (
        PolicyAction,
        PolicyCondition,
        PolicyDefaults,
        PolicyDocument,
        PolicyOperator,
        PolicyRule,
    )

    document = PolicyDocument(
        name="resources",
        defaults=PolicyDefaults(action=PolicyAction.DENY),
        rules=[
            PolicyRule(
                name="deny-delete",
                condition=PolicyCondition(
                    field="tool_name", operator=PolicyOperator.EQ, value="resource.delete"
                ),
                action=PolicyAction.DENY,
                priority=100,
            ),
            PolicyRule(
                name="allow-read-write",
                condition=PolicyCondition(field="tool_name", operator=PolicyOperator.IN, value=list(ALLOWED)),
                action=PolicyAction.ALLOW,
            ),
        ],
    )
    return PolicyEvaluator(policies=[document])


def check_decisions(decide: Callable[[str], bool], name: str) -> None:
    """The policy must say what the Atlas says: four allowed, delete denied."""
    got = {action: decide(action) for action in ACTIONS}
    want = {action: action in ALLOWED for action in ACTIONS}
    if got != want:
        raise SystemExit(f"{name}: the policy does not match the Atlas: {got}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="timed calls per scenario")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # AGT logs warnings on some paths; logging is not what is measured
    warnings.simplefilter("ignore")
    count = args.count

    engine = agentmesh_engine()
    check_decisions(lambda a: engine.evaluate(AGENT, {"action": {"type": a}}).allowed, "agentmesh")
    evaluator = agent_os_evaluator()
    check_decisions(lambda a: evaluator.evaluate({"tool_name": a}).allowed, "agent_os")

    results: dict[str, Any] = {}
    get_context = {"action": {"type": "resource.get"}}
    results["agentmesh_evaluate_1"] = measure(lambda: engine.evaluate(AGENT, get_context), count)
    contexts = [{"action": {"type": a}} for a in ACTIONS]

    def sweep() -> None:
        for context in contexts:
            engine.evaluate(AGENT, context)

    results["agentmesh_evaluate_5"] = measure(sweep, max(1, count // 5))
    os_context = {"tool_name": "resource.get"}
    results["agent_os_evaluate_1"] = measure(lambda: evaluator.evaluate(os_context), count)
    os_contexts = [{"tool_name": a} for a in ACTIONS]

    def os_sweep() -> None:
        for context in os_contexts:
            evaluator.evaluate(context)

    results["agent_os_evaluate_5"] = measure(os_sweep, max(1, count // 5))

    from agentmesh.governance import AuditLog, FileAuditSink

    data = {"policy_id": "allow-read", "result": "allow", "action_id": "resource.get"}
    write = AuditLog().log  # in memory: each entry hashed into the Merkle tree inside the call
    results["agentmesh_audit_log"] = measure(
        lambda: write("policy.evaluated", AGENT, "resource.get", data=data, policy_decision="allow"), count
    )
    with tempfile.TemporaryDirectory(prefix="agt-bench-") as directory:
        sink = FileAuditSink(Path(directory) / "audit.jsonl", secret_key=b"bench-secret-key-0123456789abcdef")
        file_log = AuditLog(sink=sink)
        results["agentmesh_audit_log_file"] = measure(
            lambda: file_log.log(
                "policy.evaluated", AGENT, "resource.get", data=data, policy_decision="allow"
            ),
            count,
        )
        sink.close()

    versions = {}
    for dist in ("agent-governance-toolkit", "agent-governance-toolkit-core"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    json.dump(
        {"python": platform.python_version(), "versions": versions, "results": results},
        sys.stdout,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
