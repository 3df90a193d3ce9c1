"""Atlases the benchmarks run against.

- ``partial_atlas()``: the 5-action Atlas of ``tests/conformance/resolve.partial.json`` (SPEC 12's
  "5-action conformance Atlas"): 4 actions allowed, 1 denied, every action with a ``parameters_schema``.
- ``generated_atlas()``: a synthetic Atlas with 200 actions and 50 policies (SPEC 12's "200 actions /
  50 policies"), built by arithmetic only, so every run benchmarks exactly the same manifest.

Both return plain manifest dicts; ``make_runtime`` loads one into a fresh ``cra.Runtime`` on a
``ManualClock`` (so resolution TTLs never expire during a run) with in-memory trace storage.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import cra

__all__ = [
    "DOMAINS",
    "PARTIAL_ATLAS_PATH",
    "VERBS",
    "generated_atlas",
    "make_runtime",
    "partial_atlas",
]

REPO = Path(__file__).resolve().parent.parent
PARTIAL_ATLAS_PATH = REPO / "tests" / "conformance" / "resolve.partial.json"

# 20 domains x 10 verbs = 200 actions.
DOMAINS = (
    "billing",
    "crm",
    "ticket",
    "invoice",
    "order",
    "catalog",
    "inventory",
    "shipping",
    "payment",
    "refund",
    "user",
    "group",
    "report",
    "audit",
    "document",
    "calendar",
    "mail",
    "chat",
    "deploy",
    "secret",
)
VERBS = ("get", "list", "search", "create", "update", "delete", "export", "archive", "approve", "notify")
_RISK = {
    "get": "low",
    "list": "low",
    "search": "low",
    "create": "medium",
    "update": "medium",
    "notify": "medium",
    "delete": "high",
    "archive": "high",
    "export": "high",
    "approve": "critical",
}


@functools.cache
def _partial_manifest() -> str:
    return json.dumps(json.loads(PARTIAL_ATLAS_PATH.read_text(encoding="utf-8"))["atlas"])


def partial_atlas() -> dict[str, Any]:
    """The manifest of the 5-action conformance Atlas (a fresh copy each call)."""
    manifest: dict[str, Any] = json.loads(_partial_manifest())
    return manifest


def _schema(verb: str, domain: str) -> dict[str, Any]:
    """A parameters_schema typical of the verb (a few properties, some required, some constrained)."""
    ident = {"type": "string", "minLength": 1, "maxLength": 64}
    if verb in ("get", "delete", "archive"):
        props: dict[str, Any] = {f"{domain}_id": ident}
        if verb == "delete":
            props["reason"] = {"type": "string", "maxLength": 500}
        return {"type": "object", "properties": props, "required": [f"{domain}_id"]}
    if verb == "list":
        return {
            "type": "object",
            "properties": {
                "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                "cursor": {"type": "string"},
            },
        }
    if verb == "search":
        return {
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1},
                "filters": {"type": "object", "additionalProperties": {"type": "string"}},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100},
            },
            "required": ["query"],
        }
    if verb in ("create", "update"):
        props = {
            "name": {"type": "string", "minLength": 1},
            "data": {"type": "object"},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
        }
        required = ["name"]
        if verb == "update":
            props[f"{domain}_id"] = ident
            required = [f"{domain}_id"]
        return {"type": "object", "properties": props, "required": required}
    if verb == "export":
        return {
            "type": "object",
            "properties": {"format": {"enum": ["csv", "json"]}, "since": {"type": "string"}},
            "required": ["format"],
        }
    if verb == "approve":
        return {
            "type": "object",
            "properties": {f"{domain}_id": ident, "comment": {"type": "string"}},
            "required": [f"{domain}_id"],
        }
    return {  # notify
        "type": "object",
        "properties": {"to": {"type": "string"}, "message": {"type": "string", "maxLength": 2000}},
        "required": ["to", "message"],
    }


def _actions() -> list[dict[str, Any]]:
    actions = []
    for d, domain in enumerate(DOMAINS):
        for verb in VERBS:
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


def _policies() -> list[dict[str, Any]]:
    policies: list[dict[str, Any]] = []

    def add(policy_id: str, ptype: str, actions: list[str], **extra: Any) -> None:
        policies.append({"policy_id": policy_id, "type": ptype, "actions": actions, **extra})

    # 14 allow: read verbs everywhere, every action of the first ten domains, notify for known agents.
    for verb in ("get", "list", "search"):
        add(f"allow-{verb}", "allow", [f"*.{verb}"])
    for domain in DOMAINS[:10]:
        add(f"allow-{domain}", "allow", [f"{domain}.*"])
    add("allow-notify-agents", "allow", ["*.notify"], conditions={"agents": ["agent-*", "bot-*"]})

    # 12 deny with conditions (most do not hold for a plain low-risk request: they must still be checked).
    add("deny-delete-critical", "deny", ["*.delete"], priority=100, conditions={"risk_tiers": ["critical"]})
    add("deny-export-critical", "deny", ["*.export"], priority=100, conditions={"risk_tiers": ["critical"]})
    for domain in DOMAINS[:5]:
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
    for domain in DOMAINS[5:8]:
        add(
            f"deny-{domain}-delete-prod",
            "deny",
            [f"{domain}.delete"],
            priority=50,
            conditions={"context_matches": {"env": "prod"}},
        )
    # No time_window condition: before the HH:MM schema fix (after 8f632a9) no Atlas with one loaded, and
    # the benchmark Atlas is kept identical across versions so that their figures compare.
    add(
        "deny-approve-contractors",
        "deny",
        ["*.approve"],
        priority=10,
        conditions={"agents": ["contractor-*"], "risk_tiers": ["high", "critical"]},
        parameters={"reason": "Contractors cannot approve"},
    )

    # 10 require_approval by risk tier.
    add("approve-delete", "require_approval", ["*.delete"], conditions={"risk_tiers": ["high", "critical"]})
    add("approve-archive", "require_approval", ["*.archive"], conditions={"risk_tiers": ["high", "critical"]})
    for domain in DOMAINS[:5]:
        add(
            f"approve-{domain}-export",
            "require_approval",
            [f"{domain}.export"],
            conditions={"risk_tiers": ["high", "critical"]},
        )
    for domain in DOMAINS[8:11]:
        add(
            f"approve-{domain}-critical",
            "require_approval",
            [f"{domain}.*"],
            conditions={"risk_tiers": ["critical"]},
        )

    # 8 rate limits (they also grant the actions they match) with the three scopes.
    scopes = ("session", "agent", "global")
    for i, domain in enumerate(DOMAINS[4:12]):
        add(
            f"rate-{domain}",
            "rate_limit",
            [f"{domain}.*"],
            parameters={"max_calls": 100 * (i + 1), "window_seconds": 60, "scope": scopes[i % 3]},
        )

    # 6 budgets with per-verb costs.
    for i, domain in enumerate(DOMAINS[12:18]):
        add(
            f"budget-{domain}",
            "budget",
            [f"{domain}.*"],
            parameters={
                "max_cost": 10_000.0,
                "period_seconds": 3600,
                "scope": scopes[i % 3],
                "costs": {"*.export": 5, "*.create": 2, "*.update": 1.5},
            },
        )
    return policies


@functools.cache
def _generated_manifest(n_actions: int, n_policies: int) -> str:
    actions = _actions()[:n_actions]
    policies = _policies()
    if len(policies) != 50 or n_policies > len(policies):
        raise AssertionError(f"expected 50 generated policies, got {len(policies)}")
    action_ids = {a["action_id"] for a in actions}
    policies = [
        p for p in policies[:n_policies] if all("*" in g or g in action_ids for g in p.get("actions", []))
    ]
    capabilities = [
        {
            "capability_id": domain,
            "name": domain.title(),
            "actions": [a["action_id"] for a in actions if a["action_id"].startswith(f"{domain}.")],
        }
        for domain in DOMAINS
        if any(a["action_id"].startswith(f"{domain}.") for a in actions)
    ]
    manifest = {
        "atlas_version": "1.0",
        "atlas_id": "org.example.bench",
        "version": "1.0.0",
        "name": "Benchmark",
        "description": f"Generated benchmark Atlas: {len(actions)} actions, {len(policies)} policies",
        "capabilities": capabilities,
        "policies": policies,
        "actions": actions,
    }
    return json.dumps(manifest)


def generated_atlas(n_actions: int = 200, n_policies: int = 50) -> dict[str, Any]:
    """The synthetic Atlas (a fresh copy each call): 200 actions in 20 domains x 10 verbs, 50 policies.

    Policies: 14 ``allow`` (globs, one with an ``agents`` condition), 12 ``deny`` with conditions
    (``risk_tiers``, ``context_matches``, ``agents``), 10 ``require_approval`` with
    ``risk_tiers``, 8 ``rate_limit`` and 6 ``budget`` (session, agent and global scopes). Five actions carry
    their own ``rate_limit``; every action has a ``parameters_schema``. A plain low-risk resolve by
    ``agent-1`` gives ``requires_approval``: 172 actions allowed (28 of them needing approval), 28 denied
    (20 by a deny condition, 8 by default deny) and 20 limit constraints.
    """
    manifest: dict[str, Any] = json.loads(_generated_manifest(n_actions, n_policies))
    return manifest


def make_runtime(manifest: dict[str, Any], **kwargs: Any) -> cra.Runtime:
    """A fresh runtime (ManualClock, memory:// storage unless given) with ``manifest`` loaded."""
    kwargs.setdefault("clock", cra.ManualClock())
    runtime = cra.Runtime(**kwargs)
    runtime.load_atlas(copy.deepcopy(manifest))
    return runtime
