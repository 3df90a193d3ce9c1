"""``cra resolve``: load Atlases into a throwaway runtime, open a session and show one CARP resolution."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

import cra
from cra.errors import InvalidAtlasError

from ._output import EXIT_FAILURE, Output, fail, fail_cra, print_json
from .validate import plural, print_problems

__all__ = ["RiskTier", "load_atlases", "resolve_command"]

_DECISION_STYLE = {
    "allow": "bold green",
    "partial": "bold yellow",
    "requires_approval": "bold magenta",
    "deny": "bold red",
}


class RiskTier(StrEnum):
    """The task's risk tier (SPEC 3.1)."""

    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


def _rate(limit: dict[str, int] | None) -> str:
    if limit is None:
        return "-"
    return f"{limit['max_calls']}/{limit['window_seconds']}s, {limit['remaining']} left"


def _seconds(value: Any) -> str:
    return "session" if value is None else f"{value}s"


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _constraint_limit(constraint: dict[str, Any]) -> str:
    params = constraint.get("parameters") or {}
    kind = constraint.get("type")
    if kind == "rate_limit":
        return (
            f"{params.get('max_calls')} calls/{_seconds(params.get('window_seconds'))}, "
            f"{params.get('remaining')} left ({params.get('scope', 'session')})"
        )
    if kind == "budget":
        return (
            f"{_number(params.get('spent'))}/{_number(params.get('max_cost'))} per "
            f"{_seconds(params.get('period_seconds'))}, {_number(params.get('remaining'))} left "
            f"({params.get('scope', 'session')})"
        )
    if kind == "require_approval":
        return "approval needed"
    return ", ".join(f"{k}={v}" for k, v in params.items() if k != "actions")


def _show(out: Output, resolution: cra.Resolution) -> None:
    decision = resolution.decision_type
    reason = f" ({resolution.decision_reason})" if resolution.decision_reason else ""
    out.line("decision: ", (decision, _DECISION_STYLE.get(decision, "bold")), reason)
    if resolution.approval_id:
        out.line(f"approval_id: {resolution.approval_id}")
    out.line(f"resolution_id: {resolution.resolution_id}")
    out.line(f"session_id: {resolution.session_id}")
    out.line(f"expires_at: {resolution.expires_at} (ttl {resolution.ttl_seconds}s)")
    out.line("")
    out.table(
        f"Allowed actions ({len(resolution.allowed_actions)})",
        ["Action", "Risk", "Confirm", "Rate limit"],
        [
            [a.action_id, a.risk_tier, "yes" if a.requires_confirmation else "no", _rate(a.rate_limit)]
            for a in resolution.allowed_actions
        ],
        styles={0: "green"},
    )
    out.line("")
    out.table(
        f"Denied actions ({len(resolution.denied_actions)})",
        ["Action", "Policy", "Reason"],
        [[d.action_id, d.policy_id, d.reason] for d in resolution.denied_actions],
        styles={0: "red"},
    )
    out.line("")
    out.table(
        f"Context blocks ({len(resolution.context_blocks)})",
        ["Block", "Type", "Priority", "Tokens"],
        [[b.block_id, b.content_type, b.priority, b.token_estimate] for b in resolution.context_blocks],
        styles={0: "cyan"},
    )
    out.line("")
    out.table(
        f"Constraints ({len(resolution.constraints)})",
        ["Constraint", "Type", "Limit", "Actions"],
        [
            [
                c.get("constraint_id"),
                c.get("type"),
                _constraint_limit(c),
                ", ".join((c.get("parameters") or {}).get("actions") or []),
            ]
            for c in resolution.constraints
        ],
    )


def load_atlases(runtime: cra.Runtime, paths: list[Path], out: Output, json_output: bool) -> None:
    """Load each Atlas or exit 1: an invalid one lists its problems as ``cra validate`` does (or the SPEC 5
    body with ``--json``); an unreadable one is ``UNREADABLE_ATLAS``."""
    for path in paths:
        try:
            runtime.load_atlas(path)
        except InvalidAtlasError as exc:
            if json_output:
                fail_cra(exc, json_mode=True)
            details = exc.details or {}
            problems = details.get("problems") or []
            out.line(("invalid", "bold red"), f": {path} has {plural(len(problems), 'problem')}")
            print_problems(out, problems, details.get("warnings") or [])
            raise typer.Exit(EXIT_FAILURE) from None
        except cra.CRAError as exc:
            fail_cra(exc, json_mode=json_output)
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror or exc}", code="UNREADABLE_ATLAS", json_mode=json_output)


def resolve_command(
    atlas: Annotated[
        list[Path],
        typer.Option(
            "--atlas",
            "-a",
            metavar="DIR",
            exists=True,
            help="An Atlas directory or manifest file; repeat for several.",
            show_default=False,
        ),
    ],
    agent: Annotated[str, typer.Option("--agent", metavar="ID", help="The agent id the session belongs to.")],
    goal: Annotated[str, typer.Option("--goal", metavar="TEXT", help="What the agent wants to do.")],
    risk_tier: Annotated[
        RiskTier, typer.Option("--risk-tier", help="The task's risk tier.", case_sensitive=False)
    ] = RiskTier.low,
    capability: Annotated[
        list[str] | None,
        typer.Option(
            "--capability",
            "-c",
            metavar="CAP",
            help="Only actions of this capability; repeat for several.",
            show_default=False,
        ),
    ] = None,
    context_hint: Annotated[
        list[str] | None,
        typer.Option(
            "--context-hint",
            metavar="PACK",
            help="A context pack id to force in; repeat for several.",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the CARP resolution as JSON.")] = False,
) -> None:
    """Show what an agent may do for a goal.

    Prints the CARP resolution: the decision, the allowed and denied actions, the context blocks injected and
    the constraints. Runs an in-memory runtime on the system clock: it loads the Atlases, opens a session for
    --agent and resolves --goal once. Exit 0 for any decision (allow, partial, requires_approval, deny), 1 if
    an Atlas is invalid or the runtime refuses the request, 2 for usage errors.

    \b
    Example:
      cra resolve --atlas support-atlas --agent support-bot --goal "Answer ticket T-1001"
      cra resolve -a support-atlas --agent bot --goal "Refund" -c billing --risk-tier high --json
    """
    out = Output()
    with cra.Runtime(clock=cra.SystemClock(), storage="memory://", import_executors=False) as runtime:
        load_atlases(runtime, atlas, out, json_output)
        try:
            session = runtime.create_session(agent, goal)
            resolution = runtime.resolve(
                session.session_id,
                goal,
                risk_tier=risk_tier.value,
                required_capabilities=capability or None,
                context_hints=context_hint or None,
            )
        except cra.CRAError as exc:
            fail_cra(exc, json_mode=json_output)
    if json_output:
        print_json(resolution.to_dict())
    else:
        _show(out, resolution)
