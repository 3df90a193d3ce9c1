"""``cra approvals list|show|approve|reject``: the approvals a server's runtime holds (SPEC 3.3).

Approvals live in the runtime that made the resolution, so these commands always talk to a server
(``--url``); there is no local mode.

Example::

    cra approvals list --session 01a2...
    cra approvals approve 01a2... --note "refund checked"
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

import cra

from ._output import Output, print_json
from ._remote import DEFAULT_URL, ApiKeyOption, TokenOption, UrlOption, connect

__all__ = ["app", "ApprovalStatus", "approve_command", "list_command", "reject_command", "show_command"]

app = typer.Typer(
    name="approvals",
    help=(
        "List and decide approvals on a CRA server.\n\n"
        "A resolution whose decision is requires_approval carries one approval for its actions that need "
        "confirmation; after approval each covered action may run once on that resolution. Exit 0 ok, 1 an "
        "error from the server (an unknown approval is APPROVAL_NOT_FOUND, one already decided "
        "APPROVAL_ALREADY_DECIDED) or an unreachable server (SERVER_UNREACHABLE), 2 usage.\n\n"
        "\b\nExample:\n"
        "  cra approvals list\n"
        "  cra approvals approve 01a2010b-e697-775d-9c06-346b47273e23 --note 'checked'"
    ),
    no_args_is_help=True,
)

_STATUS_STYLE = {
    "pending": "bold magenta",
    "approved": "bold green",
    "rejected": "bold red",
    "expired": "dim",
}

ApprovalIdArgument = Annotated[
    str, typer.Argument(metavar="APPROVAL_ID", help="The approval's id.", show_default=False)
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
NoteOption = Annotated[
    str | None,
    typer.Option("--note", metavar="TEXT", help="A note recorded with the decision.", show_default=False),
]
ApproverOption = Annotated[
    str | None,
    typer.Option(
        "--approver",
        metavar="NAME",
        help="Who decides (default: the authenticated caller; with auth on it must be the caller).",
        show_default=False,
    ),
]


class ApprovalStatus(StrEnum):
    """Which approvals ``list`` shows."""

    pending = "pending"
    approved = "approved"
    rejected = "rejected"
    expired = "expired"
    all = "all"


def _show(out: Output, approval: cra.Approval) -> None:
    out.line("approval_id: ", (approval.approval_id, "bold"))
    out.line("status: ", (approval.status, _STATUS_STYLE.get(approval.status, "bold")))
    out.line(f"session_id: {approval.session_id}")
    out.line(f"agent_id: {approval.agent_id}")
    out.line(f"resolution_id: {approval.resolution_id}")
    out.line(f"actions: {', '.join(approval.action_ids)}")
    out.line(f"created_at: {approval.created_at}")
    out.line(f"expires_at: {approval.expires_at}")
    if approval.decided_at is not None:
        out.line(f"decided_at: {approval.decided_at}")
        out.line(f"approver: {approval.approver or '-'}")
    if approval.note is not None:
        out.line(f"note: {approval.note}")


@app.command("list")
def list_command(
    session: Annotated[
        str | None,
        typer.Option("--session", metavar="ID", help="Only this session's approvals.", show_default=False),
    ] = None,
    status: Annotated[
        ApprovalStatus, typer.Option("--status", help="Which approvals to show.", case_sensitive=False)
    ] = ApprovalStatus.pending,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """List approvals (pending ones by default).

    An admin credential sees every session's approvals, an agent credential its own only. --json prints
    {"approvals": [...], "total": N}, each approval as the server sends it. Exit 0 (also when there are
    none), 1 on an error from the server or an unreachable server, 2 for usage errors.

    \b
    Example:
      cra approvals list
      cra approvals list --session 01a2010b-e68a-75b6-b20b-045fb182f2e5 --status all --json
    """
    with connect(url, api_key, token, json_mode=json_output) as client:
        found = client.approvals(session, status=None if status is ApprovalStatus.all else status.value)
    if json_output:
        print_json({"approvals": [a.to_dict() for a in found], "total": len(found)})
        return
    Output().table(
        f"Approvals ({len(found)}, {status.value})",
        ["Approval", "Session", "Agent", "Actions", "Status", "Expires"],
        [
            [a.approval_id, a.session_id, a.agent_id, ", ".join(a.action_ids), a.status, a.expires_at]
            for a in found
        ],
        styles={0: "cyan"},
    )


@app.command("show")
def show_command(
    approval_id: ApprovalIdArgument,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show one approval: its actions, resolution, status and, once decided, who decided and when.

    Exit 0, 1 if the server does not know it (APPROVAL_NOT_FOUND, also for another agent's approval) or
    cannot be reached, 2 for usage errors.

    \b
    Example:
      cra approvals show 01a2010b-e697-775d-9c06-346b47273e23
      cra approvals show 01a2010b-e697-775d-9c06-346b47273e23 --json
    """
    with connect(url, api_key, token, json_mode=json_output) as client:
        approval = client.get_approval(approval_id)
    if json_output:
        print_json(approval.to_dict())
    else:
        _show(Output(), approval)


def _decide(
    granted: bool,
    approval_id: str,
    approver: str | None,
    note: str | None,
    url: str,
    api_key: str | None,
    token: str | None,
    json_output: bool,
) -> None:
    with connect(url, api_key, token, json_mode=json_output) as client:
        decide = client.approve if granted else client.reject
        approval = decide(approval_id, approver=approver, note=note)
    if json_output:
        print_json(approval.to_dict())
    else:
        _show(Output(), approval)


@app.command("approve")
def approve_command(
    approval_id: ApprovalIdArgument,
    note: NoteOption = None,
    approver: ApproverOption = None,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Grant an approval (admin credential): each covered action may then run once on its resolution.

    Prints the decided approval. Exit 0, 1 if it is unknown (APPROVAL_NOT_FOUND), already decided
    (APPROVAL_ALREADY_DECIDED), expired, the credential may not decide (FORBIDDEN) or the server cannot be
    reached, 2 for usage errors.

    \b
    Example:
      cra approvals approve 01a2010b-e697-775d-9c06-346b47273e23
      cra approvals approve 01a2010b-e697-775d-9c06-346b47273e23 --note "refund checked" --api-key "$ADMIN_KEY"
    """
    _decide(True, approval_id, approver, note, url, api_key, token, json_output)


@app.command("reject")
def reject_command(
    approval_id: ApprovalIdArgument,
    note: NoteOption = None,
    approver: ApproverOption = None,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Reject an approval (admin credential): executing a covered action is then denied (APPROVAL_REJECTED).

    Prints the decided approval. Exit codes as for approve.

    \b
    Example:
      cra approvals reject 01a2010b-e697-775d-9c06-346b47273e23 --note "amount above policy"
    """
    _decide(False, approval_id, approver, note, url, api_key, token, json_output)
