"""kill -9 mid-stream: every acknowledged execute is on disk after a restart, and every chain verifies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import cra

CHILD = textwrap.dedent(
    """
    import sys, cra
    url = sys.argv[1]
    rt = cra.Runtime(storage=url, tracing=sys.argv[2])
    rt.load_atlas({"atlas_version": "1.0", "atlas_id": "org.example.crash", "version": "1.0.0",
                   "name": "Crash", "description": "x",
                   "policies": [{"policy_id": "allow", "type": "allow"}],
                   "actions": [{"action_id": "job.run", "name": "Run", "description": "Run a job"}]})
    rt.register("job.run", lambda params: {"ok": True})
    sessions = [rt.create_session(f"agent-{i}", "Work").session_id for i in range(3)]
    print("ready", flush=True)
    n = 0
    while True:
        for sid in sessions:
            res = rt.resolve(sid)
            response = rt.execute(sid, res.resolution_id, "job.run", {"n": n})
            assert response.status == "success"
            print(sid, response.execution_id, flush=True)  # acknowledged
            n += 1
    """
)


def run_and_kill(tmp_path: Path, tracing: str, acknowledged: int = 60) -> None:
    url = f"sqlite:///{tmp_path}/crash.db"
    acks: list[tuple[str, str]] = []
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, url, tracing], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        try:
            assert child.stdout.readline().strip() == "ready"
            while len(acks) < acknowledged:
                line = child.stdout.readline()
                assert line, "the child stopped early"
                sid, execution_id = line.split()
                acks.append((sid, execution_id))
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    rt = cra.Runtime(storage=url)
    executed = {
        e.payload["execution_id"]
        for sid in {s for s, _ in acks}
        for e in rt.get_trace(sid)
        if e.event_type == "action.executed"
    }
    missing = [execution_id for _, execution_id in acks if execution_id not in executed]
    assert missing == []
    for session_id in rt.storage.sessions():
        result = rt.verify(session_id)
        assert result.valid, (session_id, result)
    rt.close()


def test_kill_9_loses_no_acknowledged_execute_with_deferred_tracing(tmp_path: Path) -> None:
    run_and_kill(tmp_path, "deferred")


def test_kill_9_loses_no_acknowledged_execute_with_immediate_tracing(tmp_path: Path) -> None:
    run_and_kill(tmp_path, "immediate")
