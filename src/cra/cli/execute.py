"""``cra execute``: run one action under governance, on a server (``--session``) or as a local dry run
(``--atlas``).

Example::

    cra execute --session 01a2... --agent support-bot --action ticket.read --params '{"ticket_id": "T-1"}'
    cra execute --atlas support-atlas --agent support-bot --goal "Answer T-1" --action ticket.read \\
        --params @params.json
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

import cra

from ._output import EXIT_FAILURE, EXIT_OK, Output, fail, fail_cra, print_json
from ._remote import DEFAULT_URL, ApiKeyOption, TokenOption, UrlOption, connect
from .resolve import RiskTier, load_atlases

__all__ = ["action_verdict", "execute_command", "exit_code", "parse_params"]

_STATUS_STYLE = {
    "success": "bold green",
    "authorized": "bold green",
    "pending_approval": "bold magenta",
    "denied": "bold red",
    "error": "bold red",
}
_VERDICT_STYLE = {
    "allowed": "bold green",
    "requires_approval": "bold magenta",
    "denied": "bold red",
    "not_offered": "bold red",
}
_PARAMS = "'--params'"
_MODE = "'--session' / '--atlas'"


def _on_command_line(ctx: typer.Context, name: str) -> bool:
    # Compared by name: the ParameterSource enum lives in typer's private copy of click.
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _reject_constant(name: str) -> Any:
    # NaN and infinities are not JSON and the runtime refuses them anyway: say so at the option.
    raise ValueError(f"{name} is not a JSON number")


def parse_params(text: str | None) -> dict[str, Any]:
    """The ``--params`` value: a JSON object, or ``@FILE`` holding one (``@-`` reads stdin); ``{}`` when
    absent. Anything else is a usage error (exit 2).

    Example::

        parse_params('{"ticket_id": "T-1001"}')  # {'ticket_id': 'T-1001'}
        parse_params("@params.json")
    """
    if text is None:
        return {}
    if text.startswith("@"):
        name = text[1:]
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise typer.BadParameter(f"cannot read {name}: {reason}", param_hint=_PARAMS) from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint=_PARAMS) from None
    if not isinstance(value, dict):
        raise typer.BadParameter(
            f'must be a JSON object such as \'{{"ticket_id": "T-1001"}}\', not {type(value).__name__}',
            param_hint=_PARAMS,
        )
    return value


def exit_code(response: cra.ExecuteResponse) -> int:
    """0 when the action may go ahead or went ahead (``success``, ``authorized``); 1 for ``denied``,
    ``error`` and ``pending_approval``, so that ``cra execute ... && next-step`` only continues when it
    may."""
    return EXIT_OK if response.ok else EXIT_FAILURE


def action_verdict(resolution: cra.Resolution, action_id: str) -> dict[str, Any]:
    """What a resolution says about one action: ``verdict`` is ``allowed``, ``requires_approval``,
    ``denied`` (with ``policy_id`` and ``reason``) or ``not_offered`` (not a candidate at all: unknown,
    or outside the capabilities asked for).

    Example::

        action_verdict(resolution, "ticket.close")
        # {'action_id': 'ticket.close', 'verdict': 'requires_approval', 'approval_id': '01a2...', ...}
    """
    verdict: dict[str, Any] = {
        "action_id": action_id,
        "verdict": "not_offered",
        "policy_id": None,
        "reason": None,
        "approval_id": None,
    }
    allowed = resolution.allowed(action_id)
    if allowed is not None:
        verdict["risk_tier"] = allowed.risk_tier
        verdict["rate_limit"] = allowed.rate_limit
        if allowed.requires_confirmation:
            verdict.update(verdict="requires_approval", approval_id=resolution.approval_id)
        else:
            verdict["verdict"] = "allowed"
        return verdict
    for denied in resolution.denied_actions:
        if denied.action_id == action_id:
            verdict.update(verdict="denied", policy_id=denied.policy_id, reason=denied.reason)
            return verdict
    verdict["reason"] = "not a candidate of this resolution (unknown action, or outside the capabilities)"
    return verdict


def _show_verdict(out: Output, resolution: cra.Resolution, verdict: dict[str, Any]) -> None:
    reason = f" ({resolution.decision_reason})" if resolution.decision_reason else ""
    out.line(f"resolution: {resolution.resolution_id}, decision {resolution.decision_type}{reason}")
    detail = ""
    if verdict["verdict"] == "denied":
        detail = f" by policy {verdict['policy_id']}: {verdict['reason']}"
    elif verdict["verdict"] == "not_offered":
        detail = f": {verdict['reason']}"
    elif verdict.get("rate_limit"):
        limit = verdict["rate_limit"]
        detail = f" (rate limit {limit['max_calls']}/{limit['window_seconds']}s, {limit['remaining']} left)"
    name = verdict["verdict"]
    out.line(f"action {verdict['action_id']}: ", (name, _VERDICT_STYLE.get(name, "bold")), detail)
    out.line("")


def _show_response(out: Output, response: cra.ExecuteResponse) -> None:
    status = response.status
    out.line(
        "status: ", (status, _STATUS_STYLE.get(status, "bold")), " (replayed)" if response.replayed else ""
    )
    out.line(f"execution_id: {response.execution_id}")
    out.line(f"action_id: {response.action_id}")
    out.line(f"session_id: {response.session_id}")
    out.line(f"resolution_id: {response.resolution_id}")
    if response.error is not None:
        out.line("error: ", (f"{response.error.get('code')}", "red"), f": {response.error.get('message')}")
    if response.approval_id is not None:
        out.line(f"approval_id: {response.approval_id}")
    if status == "success":
        out.line(f"result: {json.dumps(response.result, ensure_ascii=False)}")
    if response.duration_ms is not None:
        out.line(f"duration_ms: {response.duration_ms}")
    if response.idempotency_key is not None:
        out.line(f"idempotency_key: {response.idempotency_key}")


def _hint(out: Output, response: cra.ExecuteResponse, *, remote: bool, agent: str) -> None:
    """What to do next, for the two statuses that leave work to the caller."""
    if response.status == "authorized":
        if remote:
            out.line(
                f"note: no handler is registered for {response.action_id}: the server ran nothing; run the "
                "action yourself and report the outcome (Client.complete / POST /v1/executions/<id>/complete)"
            )
        else:
            out.line(
                f"note: no executor is named for {response.action_id}: nothing ran (dry run); on a server the "
                "caller would run it and report the outcome with complete"
            )
    elif response.status == "pending_approval":
        if remote:
            out.line(
                f"next: cra approvals approve {response.approval_id}, then run again on the same resolution:"
            )
            out.line(
                f"  cra execute --session {response.session_id} --agent {agent} --action {response.action_id} "
                f"--resolution {response.resolution_id} --params ..."
            )
        else:
            out.line("note: on a server this call waits for a human to approve it (cra approvals approve)")


def _check_mode(
    ctx: typer.Context,
    *,
    session: str | None,
    atlas: list[Path] | None,
    resolution: str | None,
    goal: str | None,
    storage: str | None,
    capability: list[str] | None,
) -> None:
    """Exactly one mode, and only the options that mode uses: a silently ignored option would make the
    command do something other than what was asked. Usage errors exit 2."""

    def usage(message: str, hint: str) -> typer.BadParameter:
        return typer.BadParameter(message, ctx=ctx, param_hint=hint)

    if session is not None and atlas:
        raise usage("give --session (run on a server) or --atlas (local dry run), not both", _MODE)
    if session is None and not atlas:
        raise usage("give --session ID to execute in a server's session, or --atlas DIR for a dry run", _MODE)
    if session is not None and storage is not None:
        raise usage("--storage is for the local dry run: a server keeps its own trace", "'--storage'")
    if resolution is not None and (capability or _on_command_line(ctx, "risk_tier")):
        raise usage(
            "--risk-tier and --capability shape a new resolution: not with --resolution", "'--resolution'"
        )
    if atlas:
        if resolution is not None:
            raise usage("--resolution is for --session: the dry run resolves for itself", "'--resolution'")
        if goal is None:
            raise usage("the local dry run needs --goal (the goal it resolves for)", "'--goal'")
        for name in ("url", "api_key", "token"):
            if _on_command_line(ctx, name):
                flag = "--" + name.replace("_", "-")
                raise usage(f"{flag} is for --session: the dry run talks to no server", f"'{flag}'")


def _remote(
    *,
    url: str,
    api_key: str | None,
    token: str | None,
    session: str,
    agent: str,
    action: str,
    params: dict[str, Any],
    resolution_id: str | None,
    goal: str | None,
    risk_tier: RiskTier,
    capability: list[str] | None,
    idempotency_key: str | None,
    json_output: bool,
) -> None:
    out = Output()
    resolution: cra.Resolution | None = None
    with connect(url, api_key, token, json_mode=json_output) as client:
        if resolution_id is None:
            # Without --resolution, resolve now (the session's goal unless --goal) and execute under that.
            task: dict[str, Any] = {"risk_tier": risk_tier.value}
            if capability:
                task["required_capabilities"] = capability
            resolution = client.resolve(session, agent_id=agent, goal=goal, **task)
            resolution_id = resolution.resolution_id
        response = client.execute(
            session,
            resolution_id,
            action,
            params,
            agent_id=agent,
            goal=goal or "execute",
            idempotency_key=idempotency_key,
        )
    if json_output:
        print_json(response.to_dict())
    else:
        if resolution is not None:
            _show_verdict(out, resolution, action_verdict(resolution, action))
        _show_response(out, response)
        _hint(out, response, remote=True, agent=agent)
    raise typer.Exit(exit_code(response))


def _local(
    *,
    atlas: list[Path],
    storage: str | None,
    agent: str,
    goal: str,
    action: str,
    params: dict[str, Any],
    risk_tier: RiskTier,
    capability: list[str] | None,
    idempotency_key: str | None,
    json_output: bool,
) -> None:
    out = Output()
    url = storage or "memory://"
    try:
        runtime = cra.Runtime(clock=cra.SystemClock(), storage=url)
    except ValueError as exc:  # an unknown scheme or a malformed URL
        raise typer.BadParameter(str(exc), param_hint="'--storage'") from None
    except (OSError, sqlite3.Error, cra.CRAError) as exc:  # unreadable, locked, not a database
        fail(f"cannot open storage {url}: {exc}", code="STORAGE_UNAVAILABLE", json_mode=json_output)
    with runtime:
        load_atlases(runtime, atlas, out, json_output)
        try:
            session = runtime.create_session(agent, goal)
            resolution = runtime.resolve(
                session.session_id, goal, risk_tier=risk_tier.value, required_capabilities=capability or None
            )
            response = runtime.execute(
                session.session_id, resolution.resolution_id, action, params, idempotency_key=idempotency_key
            )
            # Nothing will ever report the outcome of this throwaway session: end it so that the kept trace
            # is complete (an `authorized` execution is then recorded as failed with SESSION_ENDED).
            runtime.end_session(session.session_id)
        except cra.CRAError as exc:
            fail_cra(exc, json_mode=json_output)
    verdict = action_verdict(resolution, action)
    if json_output:
        print_json({"execution": response.to_dict(), "action": verdict, "resolution": resolution.to_dict()})
    else:
        _show_verdict(out, resolution, verdict)
        _show_response(out, response)
        _hint(out, response, remote=False, agent=agent)
        if storage is not None:
            out.line(
                f"trace: kept in {storage}; cra trace export --storage {storage} --session {session.session_id}"
            )
    raise typer.Exit(exit_code(response))


def execute_command(
    ctx: typer.Context,
    agent: Annotated[
        str,
        typer.Option("--agent", metavar="ID", help="The agent id (the session's owner).", show_default=False),
    ],
    action: Annotated[
        str, typer.Option("--action", metavar="ACTION_ID", help="The action to execute.", show_default=False)
    ],
    params: Annotated[
        str | None,
        typer.Option(
            "--params",
            metavar="JSON",
            help="The parameters: a JSON object, or @FILE holding one (@- for stdin). Default {}.",
            show_default=False,
        ),
    ] = None,
    session: Annotated[
        str | None,
        typer.Option(
            "--session", metavar="ID", help="Execute in this session of a server.", show_default=False
        ),
    ] = None,
    resolution: Annotated[
        str | None,
        typer.Option(
            "--resolution",
            metavar="ID",
            help="With --session: the resolution to execute under (default: resolve now).",
            show_default=False,
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            metavar="KEY",
            help="The same key in a session returns the first response and runs nothing twice.",
            show_default=False,
        ),
    ] = None,
    atlas: Annotated[
        list[Path] | None,
        typer.Option(
            "--atlas",
            "-a",
            metavar="DIR",
            exists=True,
            help="Local dry run: an Atlas directory or manifest; repeat for several.",
            show_default=False,
        ),
    ] = None,
    goal: Annotated[
        str | None,
        typer.Option(
            "--goal",
            metavar="TEXT",
            help="The goal to resolve for (required with --atlas; with --session default the session's).",
            show_default=False,
        ),
    ] = None,
    risk_tier: Annotated[
        RiskTier,
        typer.Option("--risk-tier", help="The task's risk tier when resolving.", case_sensitive=False),
    ] = RiskTier.low,
    capability: Annotated[
        list[str] | None,
        typer.Option(
            "--capability",
            "-c",
            metavar="CAP",
            help="When resolving: only this capability's actions; repeat for several.",
            show_default=False,
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            metavar="URL",
            help="Local dry run: keep the trace here (sqlite:///cra.db, jsonl:///dir); default in memory.",
            show_default=False,
        ),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    token: TokenOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Execute one action under governance: on a server, or as a local dry run.

    With --session, on a `cra serve` server (--url): executes --action with --params in that session, under
    --resolution or, without it, under a resolution made now for the session's goal. --json prints the
    execute response (SPEC 3.3). With --atlas, a local dry run: an in-memory runtime loads the Atlases, opens
    a session for --agent, resolves --goal and executes the action once, to see whether the policies allow
    the call. Nothing runs unless the Atlas names an executor for the action (status authorized); --json
    prints {execution, action, resolution}; --storage keeps the trace.

    Exit 0 for success or authorized, 1 for denied, error or pending_approval (and for runtime errors such as
    INVALID_PARAMETERS, an unknown session, an unreachable server: SERVER_UNREACHABLE), 2 for usage errors
    (bad --params JSON, neither or both of --session and --atlas).

    \b
    Example:
      cra execute --session 01a2... --agent support-bot --action ticket.read --params '{"ticket_id": "T-1001"}'
      cra execute --session 01a2... --agent support-bot --action refund.issue --resolution 01a2... \\
          --params @refund.json --idempotency-key refund-T-1001 --json
      cra execute --atlas support-atlas --agent support-bot --goal "Answer ticket T-1001" \\
          --action customer.delete --params '{"customer_id": "C-1"}'
    """
    _check_mode(
        ctx,
        session=session,
        atlas=atlas,
        resolution=resolution,
        goal=goal,
        storage=storage,
        capability=capability,
    )
    parameters = parse_params(params)
    if session is not None:
        _remote(
            url=url,
            api_key=api_key,
            token=token,
            session=session,
            agent=agent,
            action=action,
            params=parameters,
            resolution_id=resolution,
            goal=goal,
            risk_tier=risk_tier,
            capability=capability,
            idempotency_key=idempotency_key,
            json_output=json_output,
        )
    else:
        assert atlas and goal is not None  # _check_mode made sure
        _local(
            atlas=atlas,
            storage=storage,
            agent=agent,
            goal=goal,
            action=action,
            params=parameters,
            risk_tier=risk_tier,
            capability=capability,
            idempotency_key=idempotency_key,
            json_output=json_output,
        )
