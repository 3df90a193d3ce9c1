"""Crash safety of ``cra serve`` (SPEC 13): ``kill -9`` under load, then a restart on the same SQLite file.

A real ``cra serve`` process takes concurrent executes from several threads (one session each). Once some
hundreds have been acknowledged (an HTTP 200 with an ``execution_id``) it is killed with SIGKILL while
requests are still in flight. The test then checks, first on the file as the crash left it and then through a
restarted server: every acknowledged execution is in its session's trace (``action.requested`` naming it and
the ``action.approved`` of the same span: SPEC 4.5 acknowledges an execute only once both are durable), every
chain verifies, every session is still there, and a rate limit used up before the crash still holds after it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from cra import open_storage, verify_chain
from cra.client import Client
from cra.trace.event import TraceEvent

from .atlas import APPROVAL_ATLAS
from .live import free_port

THREADS = 8
"""Load threads, one session each: more than the server's cores, so requests queue inside it."""
ACK_TARGET = 300
"""Acknowledged executes to reach before the kill (some hundreds: many group commits, not one)."""
START_DEADLINE = 20.0
"""Seconds a server start may take; a loaded 2-core CI machine imports slowly."""
LOAD_DEADLINE = 30.0
"""Seconds the load may take to reach ACK_TARGET (it normally takes well under one)."""
AGENT = "crash-agent"


@dataclass
class Served:
    """One ``cra serve`` process and where it listens."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def log_tail(self) -> str:
        """The end of the server's output, for assertion messages."""
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return "(no server log)"


@dataclass
class Load:
    """What the load threads saw, per thread (each thread writes only its own slot)."""

    acked: list[list[str]] = field(default_factory=lambda: [[] for _ in range(THREADS)])
    failures: list[str] = field(default_factory=list)
    interrupted: list[bool] = field(default_factory=lambda: [False] * THREADS)
    enough: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    count: int = 0

    def ack(self, index: int, execution_id: str) -> None:
        self.acked[index].append(execution_id)
        with self.lock:
            self.count += 1
            if self.count >= ACK_TARGET:
                self.enough.set()

    def fail(self, message: str) -> None:
        self.failures.append(message)
        self.enough.set()  # wake the main thread: the test has already failed


def _server_env() -> dict[str, str]:
    # The developer's or CI's own CRA_* settings (a config file, auth, another storage) must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRA_")}
    env["CRA_LOG_LEVEL"] = "warning"
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End a server process and reap it: SIGTERM (a clean flush), then SIGKILL if it hangs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
            return
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait(15)


@contextmanager
def serving(tmp: Path, db: Path, atlas_dir: Path, name: str, *extra: str) -> Iterator[Served]:
    """Run ``cra serve`` on a free loopback port until the block ends (the process is always reaped)."""
    # The free port is found by binding and releasing it, so another process may take it before the server
    # binds: a server that exits before answering is retried on a fresh port.
    for attempt in range(3):
        port = free_port()
        log = tmp / f"{name}-{attempt}.log"
        command = [
            sys.executable,
            "-c",
            "from cra.cli import main; main()",  # cra.cli has no __main__; this is what the console script runs
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage",
            f"sqlite:///{db}",
            "--atlas",
            str(atlas_dir),
            *extra,
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=_server_env())
        served = Served(process, f"http://127.0.0.1:{port}", log)
        try:
            if _wait_ready(served):
                yield served
                return
        finally:
            _stop(process)
    raise AssertionError(f"cra serve did not start:\n{served.log_tail()}")


def _wait_ready(served: Served) -> bool:
    """Poll ``/v1/health`` until it answers 200 (True), the process exits (False), or the deadline (fail)."""
    deadline = time.monotonic() + START_DEADLINE
    with httpx.Client(base_url=served.url, timeout=1.0) as http:
        while time.monotonic() < deadline:
            if served.process.poll() is not None:
                return False
            try:
                if http.get("/v1/health").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise AssertionError(f"cra serve was not ready within {START_DEADLINE} s:\n{served.log_tail()}")


def _drive(url: str, index: int, session_id: str, resolution_id: str, load: Load) -> None:
    """Execute ``ticket.read`` until the server goes away, recording every acknowledged execution."""
    with Client(url, timeout=10.0) as client:
        n = 0
        while True:
            try:
                response = client.execute(
                    session_id,
                    resolution_id,
                    "ticket.read",
                    {"id": f"T-{n}"},
                    agent_id=AGENT,
                    idempotency_key=f"load-{index}-{n}",
                )
            except httpx.TransportError:
                # The kill: connection refused, reset, or closed before the answer. Not acknowledged.
                load.interrupted[index] = True
                return
            except Exception as exc:
                load.fail(f"thread {index}: {type(exc).__name__}: {exc}")
                return
            if response.status != "authorized":
                load.fail(f"thread {index}: execute answered {response.status}: {response.error}")
                return
            load.ack(index, response.execution_id)
            n += 1


def _missing(events: Sequence[TraceEvent], acked: Sequence[str]) -> list[str]:
    """The acknowledged execution ids without both their ``action.requested`` and ``action.approved``
    (``action.approved`` names no execution id: it is tied to the request by the span they share)."""
    spans = {e.payload["execution_id"]: e.span_id for e in events if e.event_type == "action.requested"}
    approved = {e.span_id for e in events if e.event_type == "action.approved"}
    return [x for x in acked if x not in spans or spans[x] not in approved]


def test_kill_9_under_load_loses_no_acknowledged_execute(tmp_path: Path) -> None:
    atlas_dir = tmp_path / "atlas"
    atlas_dir.mkdir()
    (atlas_dir / "atlas.json").write_bytes(orjson.dumps(APPROVAL_ATLAS))
    db = tmp_path / "cra.db"

    load = Load()
    sessions: list[tuple[str, str]] = []  # (session_id, resolution_id) per load thread
    with serving(tmp_path, db, atlas_dir, "first") as served, Client(served.url, timeout=10.0) as client:
        # The rate-limited action: both allowed replies are used before the crash.
        limited = client.create_session(AGENT, "reply to T-1 twice")
        limited_res = client.resolve(limited.session_id, agent_id=AGENT)
        replies = [
            client.execute(
                limited.session_id, limited_res.resolution_id, "ticket.reply", {"id": "T-1"}, agent_id=AGENT
            )
            for _ in range(2)
        ]
        assert [r.status for r in replies] == ["authorized", "authorized"]
        for i in range(THREADS):
            session = client.create_session(AGENT, f"read tickets, thread {i}")
            sessions.append(
                (session.session_id, client.resolve(session.session_id, agent_id=AGENT).resolution_id)
            )

        threads = [
            threading.Thread(
                target=_drive, args=(served.url, i, sid, rid, load), name=f"load-{i}", daemon=True
            )
            for i, (sid, rid) in enumerate(sessions)
        ]
        for thread in threads:
            thread.start()
        try:
            load.enough.wait(LOAD_DEADLINE)
            assert not load.failures, load.failures
            assert load.count >= ACK_TARGET, f"only {load.count} executes acknowledged:\n{served.log_tail()}"
            # The crash: the threads are mid-request (each sends its next execute as soon as one returns).
            os.kill(served.process.pid, signal.SIGKILL)
            served.process.wait(15)
        finally:
            for thread in threads:
                thread.join(15)
        assert not any(t.is_alive() for t in threads)
        assert not load.failures, load.failures
        assert all(load.interrupted), "every load thread should have lost a request to the kill"

    acked = {sid: load.acked[i] for i, (sid, _rid) in enumerate(sessions)}
    acked[limited.session_id] = [r.execution_id for r in replies]
    assert sum(len(ids) for ids in acked.values()) >= ACK_TARGET

    # The file as the crash left it (SQLite recovers its WAL on open): every stored chain verifies and holds
    # every acknowledged execution.
    storage = open_storage(f"sqlite:///{db}")
    try:
        assert set(acked) <= set(storage.sessions())
        for sid in storage.sessions():
            events = storage.read(sid)
            verification = verify_chain(events)
            assert verification.valid, (sid, verification)
            assert _missing(events, acked.get(sid, [])) == [], sid
    finally:
        storage.close()

    # A restarted server on the same file restores the sessions from their traces and carries on.
    with serving(tmp_path, db, atlas_dir, "second") as served, Client(served.url, timeout=10.0) as client:
        for sid, ids in acked.items():
            session = client.get_session(sid)
            assert session.status == "active" and session.agent_id == AGENT
            events = client.get_trace(sid)
            assert _missing(events, ids) == [], sid
            verification = client.verify(sid)
            assert verification.valid, (sid, verification)
            assert verification.event_count == len(events)
        # The limit survived: a third reply within the hour is refused, with the resolution from before.
        third = client.execute(
            limited.session_id, limited_res.resolution_id, "ticket.reply", {"id": "T-1"}, agent_id=AGENT
        )
        assert third.status == "denied" and third.error_code == "RATE_LIMITED", third
        # The chains continue from their stored heads: a new execute after the restart still verifies.
        sid, rid = sessions[0]
        after = client.execute(
            sid, rid, "ticket.read", {"id": "T-9"}, agent_id=AGENT, idempotency_key="after"
        )
        assert after.status == "authorized"
        assert client.verify(sid).valid and client.verify(limited.session_id).valid
        assert _missing(client.get_trace(sid), [after.execution_id]) == []
