"""Replay and diff over HTTP: the original Atlas reproduces every decision; a proposed version reports each
flipped one (the policy impact report)."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest

from cra import Runtime
from cra.client import Client
from cra.server.app import create_app

from .atlas import APPROVAL_ATLAS
from .live import running


@pytest.fixture
def client() -> Iterator[Client]:
    runtime = Runtime()
    runtime.load_atlas(APPROVAL_ATLAS)
    with running(create_app(runtime, timers=False, owns_runtime=True)) as url, Client(url) as client:
        yield client


def _session(client: Client) -> str:
    session = client.create_session("agent-1", "tickets")
    resolution = client.resolve(session.session_id, agent_id="agent-1")
    for action in ("ticket.read", "ticket.reply", "ticket.delete"):
        client.execute(
            session.session_id, resolution.resolution_id, action, {"id": "T-1"}, agent_id="agent-1"
        )
    return session.session_id


def test_replay_against_the_original_changes_nothing(client: Client) -> None:
    report = client.replay(_session(client))
    assert report["changed"] == 0 and report["unchanged"] > 0
    assert report["atlas_digest_original"] == report["atlas_digest_replayed"]


def test_replay_against_a_new_version_lists_each_flipped_decision(client: Client) -> None:
    session_id = _session(client)
    proposed = copy.deepcopy(APPROVAL_ATLAS)
    proposed["version"] = "1.1.0"
    proposed["policies"].insert(0, {"policy_id": "no-reply", "type": "deny", "actions": ["ticket.reply"]})
    report = client.replay(session_id, {"manifest": proposed})
    flipped = [d for d in report["decisions"] if d["status"] == "flipped"]
    assert report["changed"] == len(flipped) > 0
    assert {d["action_id"] for d in flipped} == {"ticket.reply"}
    assert any(d["operation"] == "execute" and d["original"] == "authorized" for d in flipped)


def test_diff_of_two_sessions_doing_the_same_is_semantically_equivalent(client: Client) -> None:
    a, b = _session(client), _session(client)
    assert client.diff(a, b)["verdict"] in ("identical", "semantically_equivalent")
    events = [e.to_dict() for e in client.get_trace(a)]
    assert client.diff(events, a)["verdict"] == "identical"
