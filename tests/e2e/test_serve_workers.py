"""`cra serve --workers 2` as a real process: both workers come up from the parent's checked configuration,
a client that keeps its connection is served consistently, and every chain the workers wrote to the shared
SQLite file verifies. (Limits shared across processes are tested on the limiter itself, tests/sqlite.)"""

from __future__ import annotations

from pathlib import Path

import orjson

from cra import open_storage, verify_chain
from cra.client import Client

from .atlas import APPROVAL_ATLAS
from .test_serve_crash import serving


def test_two_workers_share_chains_and_limits(tmp_path: Path) -> None:
    atlas_dir = tmp_path / "atlas"
    atlas_dir.mkdir()
    (atlas_dir / "atlas.json").write_bytes(orjson.dumps(APPROVAL_ATLAS))
    db = tmp_path / "cra.db"
    with serving(tmp_path, db, atlas_dir, "workers", "--workers", "2") as served:
        session_ids = []
        # Several clients, each keeping one connection (HTTP keep-alive pins it to one worker): the kernel
        # spreads the connections over both workers.
        clients = [Client(served.url, timeout=10.0) for _ in range(6)]
        try:
            for index, client in enumerate(clients):
                session = client.create_session("agent-1", f"tickets {index}")
                resolution = client.resolve(session.session_id, agent_id="agent-1")
                response = client.execute(
                    session.session_id,
                    resolution.resolution_id,
                    "ticket.read",
                    {"id": "T-1"},
                    agent_id="agent-1",
                )
                assert response.status == "authorized"
                session_ids.append(session.session_id)
        finally:
            for client in clients:
                client.close()
        log = served.log_tail()
    assert "2 workers: each keeps its own resolutions" in log
    storage = open_storage(f"sqlite:///{db}")
    try:
        for session_id in session_ids:
            events = storage.read(session_id)
            assert [e.event_type for e in events][-2:] == ["action.requested", "action.approved"]
            assert verify_chain(events).valid
    finally:
        storage.close()
