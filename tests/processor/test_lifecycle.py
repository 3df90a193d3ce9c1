"""The processor's thread across a fork and when its runtime is abandoned (SPEC 4.5)."""

from __future__ import annotations

import gc
import os
import signal
import traceback
from pathlib import Path

import pytest

from cra.trace.storage import open_storage

from .helpers import assert_chain, make_tracer, rec, shop_runtime, span


def child_session(url: str) -> None:
    """In the child: a deferred runtime of its own on a fresh storage; a whole session, flushed."""
    runtime = shop_runtime(tracing="deferred", storage=url)
    try:
        sid = runtime.create_session("child-agent", "Work in the child").session_id
        rid = runtime.resolve(sid).resolution_id
        assert runtime.execute(sid, rid, "shop.read", {"item": "kiwi"}).status == "success"
        runtime.resolve(sid)
        assert runtime.flush(timeout=10) is True
        assert runtime.verify(sid).valid
        runtime.end_session(sid)
    finally:
        runtime.close(timeout=10)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")  # 3.12+: fork of a threaded process
@pytest.mark.parametrize("backend", ["jsonl", "sqlite"])
def test_a_forked_child_traces_to_its_own_storage(tmp_path: Path, backend: str) -> None:
    parent_url = f"jsonl://{tmp_path / 'parent'}"
    child_url = (
        f"jsonl://{tmp_path / 'child'}" if backend == "jsonl" else f"sqlite:///{tmp_path / 'child.db'}"
    )
    report = tmp_path / "child-report.txt"
    parent = shop_runtime(tracing="deferred", storage=parent_url)
    try:
        sid = parent.create_session("agent-1", "Work in the parent").session_id
        parent.resolve(sid)  # possibly still buffered at the fork: the parent writes it, not the child
        thread = parent._tracer._thread
        assert thread is not None and thread.is_alive()

        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 1
            try:
                signal.signal(signal.SIGALRM, signal.SIG_DFL)
                signal.alarm(30)  # a deadlocked child dies instead of hanging the test run
                assert parent.flush(timeout=10) is True  # the inherited processor works, writes nothing
                child_session(child_url)
                code = 0
            except BaseException:
                report.write_text(traceback.format_exc())
            finally:
                os._exit(code)

        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, report.read_text() if report.exists() else status
        parent.resolve(sid)
        events = parent.get_trace(sid)  # the parent's chain: whole, once, untouched by the child
        assert_chain(events)
        assert [e.event_type for e in events].count("carp.request.received") == 2
    finally:
        parent.close()

    child_storage = open_storage(child_url)
    try:
        (child_sid,) = child_storage.sessions()
        events = child_storage.read(child_sid)
    finally:
        child_storage.close()
    assert_chain(events)
    types = [e.event_type for e in events]
    assert types[0] == "session.started" and types[-1] == "session.ended"
    assert events[0].payload["agent_id"] == "child-agent"
    assert types.count("action.executed") == 1


def test_an_abandoned_deferred_runtime_lets_its_thread_end() -> None:
    runtime = shop_runtime(tracing="deferred")
    sid = runtime.create_session("agent-1", "Forgotten").session_id
    runtime.resolve(sid)
    thread = runtime._tracer._thread
    assert thread is not None and thread.is_alive()
    del runtime  # never closed
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_an_abandoned_processor_lets_its_thread_end() -> None:
    tracer = make_tracer(start=True)
    tracer.emit(span(), [rec(0)])
    thread = tracer._thread
    assert thread is not None and thread.is_alive()
    del tracer
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_a_closed_processor_has_no_thread_left() -> None:
    tracer = make_tracer(start=True)
    thread = tracer._thread
    assert thread is not None
    tracer.close()
    thread.join(timeout=5)
    assert not thread.is_alive()
