"""Auth and ownership over a real server: no credential is refused everywhere but /v1/health, an agent key
reaches only its own sessions, traces, approvals and executions, and only admins manage Atlases and decide
approvals. Every endpoint is tried across two agents."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from cra import Runtime
from cra.client import Client
from cra.server.app import ROUTES, create_app
from cra.server.auth import ApiKeyStore, Authenticator

from .atlas import APPROVAL_ATLAS
from .live import running


@dataclass
class World:
    url: str
    admin: Client
    alice: Client
    bob: Client
    alice_session: str
    alice_resolution: str
    alice_approval: str
    alice_execution: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    keys = ApiKeyStore(tmp_path_factory.mktemp("keys") / "keys.json")
    admin_key, _ = keys.create("admin", name="ops")
    alice_key, _ = keys.create("agent", agent_id="alice")
    bob_key, _ = keys.create("agent", agent_id="bob")
    runtime = Runtime()
    runtime.load_atlas(APPROVAL_ATLAS)
    app = create_app(runtime, authenticator=Authenticator(api_keys=keys), timers=False, owns_runtime=True)
    with (
        running(app) as url,
        Client(url, api_key=admin_key) as admin,
        Client(url, api_key=alice_key) as alice,
        Client(url, api_key=bob_key) as bob,
    ):
        session = alice.create_session("alice", "look after tickets")
        resolution = alice.resolve(session.session_id, agent_id="alice")
        assert resolution.approval_id is not None
        authorized = alice.execute(
            session.session_id, resolution.resolution_id, "ticket.read", {"id": "T-1"}, agent_id="alice"
        )
        assert authorized.status == "authorized"
        pending = alice.execute(
            session.session_id, resolution.resolution_id, "ticket.close", {"id": "T-1"}, agent_id="alice"
        )
        assert pending.status == "pending_approval"
        yield World(
            url,
            admin,
            alice,
            bob,
            session.session_id,
            resolution.resolution_id,
            resolution.approval_id,
            authorized.execution_id,
        )


def _code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def test_every_route_but_health_refuses_a_missing_or_bad_credential(world: World) -> None:
    with httpx.Client(base_url=world.url) as anonymous:
        for path, methods, _fn, access in ROUTES:
            concrete = (
                path.replace("{session_id}", world.alice_session)
                .replace("{approval_id}", world.alice_approval)
                .replace("{execution_id}", world.alice_execution)
                .replace("{atlas_id}", "cra.support")
            )
            for method in methods:
                for headers in (
                    {},
                    {"X-API-Key": "cra_0000000000000000_" + "0" * 64},
                    {"X-API-Key": "nonsense"},
                ):
                    response = anonymous.request(method, concrete, headers=headers, json={})
                    if access == "public":
                        assert response.status_code == 200
                        continue
                    assert response.status_code == 401, (method, path, headers, response.text)
                    assert _code(response) == "UNAUTHORIZED"
                    assert "WWW-Authenticate" in response.headers
                    assert "0" * 64 not in response.text  # a secret is never echoed


def test_an_agent_cannot_read_or_touch_another_agents_session(world: World) -> None:
    sid = world.alice_session
    bob = world.bob.http
    assert _code(bob.get(f"/v1/sessions/{sid}")) == "FORBIDDEN"
    assert _code(bob.delete(f"/v1/sessions/{sid}")) == "FORBIDDEN"
    assert _code(bob.get(f"/v1/traces/{sid}")) == "FORBIDDEN"
    assert _code(bob.get(f"/v1/traces/{sid}/verify")) == "FORBIDDEN"
    assert _code(bob.post(f"/v1/traces/{sid}/verify", json={"expected_head": "0" * 64})) == "FORBIDDEN"
    assert _code(bob.post("/v1/replay", json={"session_id": sid})) == "FORBIDDEN"
    assert _code(bob.post("/v1/diff", json={"a": sid, "b": sid})) == "FORBIDDEN"
    assert (
        _code(bob.post(f"/v1/executions/{world.alice_execution}/complete", json={"result": 1})) == "FORBIDDEN"
    )
    # Resolve and execute: neither posing as alice nor naming alice's session as bob works.
    for requester in ({"agent_id": "alice", "session_id": sid}, {"agent_id": "bob", "session_id": sid}):
        for operation, extra in (
            ("resolve", {}),
            (
                "execute",
                {
                    "execution": {
                        "resolution_id": world.alice_resolution,
                        "action_id": "ticket.read",
                        "parameters": {"id": "T-1"},
                    }
                },
            ),
        ):
            request = world.bob._carp(
                operation, requester["session_id"], requester["agent_id"], task={"goal": "x"}
            )
            request.update(extra)
            response = bob.post(f"/v1/{operation}", json=request)
            assert response.status_code == 403 and _code(response) == "FORBIDDEN", response.text
    # Opening a session in alice's name is refused too.
    assert _code(bob.post("/v1/sessions", json={"agent_id": "alice", "goal": "g"})) == "FORBIDDEN"
    # Listings are filtered, not refused: bob sees none of alice's sessions or approvals.
    assert [s.agent_id for s in world.bob.sessions()] == []
    assert world.bob.approvals(status=None) == []
    assert bob.get(f"/v1/approvals/{world.alice_approval}").status_code in (403, 404)
    assert _code(bob.get("/v1/sessions", params={"agent_id": "alice"})) == "FORBIDDEN"
    # Nothing bob tried changed alice's session.
    assert world.alice.get_session(sid).status == "active"
    assert world.alice.verify(sid).valid


def test_only_admins_decide_approvals_and_manage_atlases(world: World) -> None:
    for client in (world.alice, world.bob):
        http = client.http
        assert _code(http.post(f"/v1/approvals/{world.alice_approval}/approve", json={})) == "FORBIDDEN"
        assert _code(http.post(f"/v1/approvals/{world.alice_approval}/reject", json={})) == "FORBIDDEN"
        assert _code(http.post("/v1/atlases", json=APPROVAL_ATLAS)) == "FORBIDDEN"
        assert _code(http.delete("/v1/atlases/cra.support")) == "FORBIDDEN"
        assert _code(http.get("/metrics")) == "FORBIDDEN"
        assert http.get("/v1/atlases").status_code == 200  # reading what governs you is allowed
    assert world.alice.get_approval(world.alice_approval).status == "pending"
    # An admin sees everyone's sessions and approvals, and signs decisions with its own name only.
    assert world.alice_session in [s.session_id for s in world.admin.sessions()]
    response = world.admin.http.post(
        f"/v1/approvals/{world.alice_approval}/approve", json={"approver": "mallory"}
    )
    assert _code(response) == "FORBIDDEN"
    approval = world.admin.approve(world.alice_approval, note="ok")
    assert approval.status == "approved" and approval.approver == "ops"
    assert world.admin.http.get("/metrics").status_code == 200
