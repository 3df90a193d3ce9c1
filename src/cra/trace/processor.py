"""Deferred tracing (SPEC 4.5): the hot path appends raw records; chaining and storage happen in batches.

Shape (OpenTelemetry's batch processor without its flaws):

- ``emit`` appends ``(span, records, time)`` to a bounded FIFO under one short lock and returns. Nothing is
  hashed, no id is made for events, no timestamp is formatted on the caller's thread.
- A background thread drains the FIFO in batches: it assigns sequences, event ids and timestamps, chains the
  hashes and writes the whole batch with one ``storage.append`` (group commit). A failed write keeps the
  batch and retries it; nothing is dropped because storage hiccuped.
- ``emit(..., durable=True)`` (execute's ``action.*`` events) returns only once its records are stored. The
  caller does not wait for the thread: it becomes the commit leader and drains the FIFO itself up to its own
  ticket, so a durable emit costs one inline group commit, not a thread hand-off.
- When the FIFO is full the producer waits (``block``), raises ``TRACE_BACKPRESSURE`` (``raise``), or drops
  the records and counts them per session (``drop``); a ``trace.gap {lost_events, reason}`` event is chained
  into that session before its next events, so a loss is never silent. Durable emits never drop.

The GIL: a hashing thread that holds the GIL for long stretches stalls the hot path (measured here: resolve
p99 from 5 µs to 3.5 ms). Measured alternatives (docs/decisions/0007-deferred-tracing-gil.md): yielding the
GIL after every 64 records made the tail *worse* (each yield is a forced hand-off); a shorter
``sys.setswitchinterval`` too. The thread therefore commits in chunks of one batch (512 records) and yields
between them; ``gc.freeze()`` after loading Atlases keeps full collections off the hot path.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..clock import Clock, format_timestamp
from ..errors import StorageUnavailableError, TraceBackpressureError
from .event import TraceEvent
from .storage import ChainConflictError, ChainHead, TraceStorage
from .tracer import Record, Span, chain_records

__all__ = ["OVERFLOW_POLICIES", "DeferredTracer"]

OVERFLOW_POLICIES = ("block", "raise", "drop")

_Item = tuple[int, Span, Sequence[Record], int]  # (ticket, span, records, time_us)


class DeferredTracer:
    """A trace sink that chains and stores in the background (see the module docstring)."""

    def __init__(
        self,
        storage: TraceStorage,
        clock: Clock,
        new_id: Callable[[], str],
        *,
        max_buffered: int = 65_536,
        batch_size: int = 512,
        chunk_size: int = 512,
        overflow: str = "block",
        flush_interval: float = 0.05,
        start: bool = True,
    ) -> None:
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {', '.join(OVERFLOW_POLICIES)}")
        if max_buffered < 1 or batch_size < 1 or chunk_size < 1:
            raise ValueError("max_buffered, batch_size and chunk_size must be positive")
        self.storage = storage
        self._clock = clock
        self._new_id = new_id
        self.max_buffered = max_buffered
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.overflow = overflow
        self.flush_interval = flush_interval
        # The FIFO and its counters are guarded by _cond; the chain heads by _commit (the leader lock). The
        # hot path (emit) takes the condition's lock directly: `with lock` is C code, `with condition` two
        # Python calls (0.1 against 0.56 µs here).
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: deque[_Item] = deque()  # unbounded deque, bounded by _buffered: never drops silently
        self._buffered = 0  # records in the queue
        self._next_ticket = 1
        self._done_ticket = 0  # every ticket <= this is durable
        self._commit = threading.Lock()
        self._heads: dict[str, ChainHead] = {}
        # Per session: [lost records, ticket the loss happened before, span of the first lost emit]. The gap is
        # chained just before the session's first event emitted after the loss, or on its own at flush.
        self._lost: dict[str, list[Any]] = {}
        self._flush_requested = False
        self._failure: BaseException | None = None
        self._processed = 0
        self._written = 0
        self._dropped = 0
        self._oldest_us = 0  # emit time of the oldest buffered item (for lag)
        self._closed = False
        self._thread: threading.Thread | None = None
        if start:
            self._start_thread()
        _LIVE.add(self)

    # --- producer side ------------------------------------------------------------------------------------

    def emit(
        self, span: Span, records: Sequence[Record], *, durable: bool = False, retain: bool = False
    ) -> None:
        """Queue records for chaining. With ``durable=True`` return only when they are stored; if storage
        refuses them, ``StorageUnavailableError`` is raised and, unless ``retain=True``, they are withdrawn
        (never written later). Non-durable records stay queued across storage failures until written."""
        if not records:
            return
        if self._closed:
            raise StorageUnavailableError("the trace processor is closed")
        count = len(records)
        now = self._clock.now_us()
        with self._lock:
            # An empty buffer takes any batch (even one larger than the buffer): nothing is refused for size.
            if self._buffered and self._buffered + count > self.max_buffered:
                if self.overflow == "drop" and not durable:
                    loss = self._lost.get(span.session_id)
                    if loss is None:
                        self._lost[span.session_id] = [count, self._next_ticket, span]
                    else:
                        loss[0] += count
                    self._dropped += count
                    return
                if self.overflow == "raise" and not durable:
                    raise TraceBackpressureError(
                        f"trace buffer is full ({self._buffered} of {self.max_buffered} records)",
                        details={"buffered": self._buffered, "max_buffered": self.max_buffered},
                    )
                # block (or a durable emit under any policy): make room by committing one batch at a time
                # inline, so no single caller pays for the whole queue.
                while self._buffered + count > self.max_buffered and self._buffered:
                    self._lock.release()
                    try:
                        self._commit_one_batch()
                    finally:
                        self._lock.acquire()
            ticket = self._next_ticket
            self._next_ticket += 1
            if not self._queue:
                self._oldest_us = now
            self._queue.append((ticket, span, records, now))
            before = self._buffered
            self._buffered = before + count
            # Wake the thread only when a batch is full: a wake-up per emit makes the thread fight the hot
            # path for the GIL. Otherwise it collects within flush_interval; durable emits commit inline.
            if before < self.batch_size <= self._buffered and not durable:
                self._cond.notify()
        if durable:
            try:
                self._drain(ticket)
            except StorageUnavailableError:
                if not retain:
                    self._withdraw(ticket)  # the caller is told it failed: it must not be written later
                raise

    # --- consumer side ------------------------------------------------------------------------------------

    def _take(self, limit: int) -> list[_Item]:
        with self._cond:
            taken: list[_Item] = []
            records = 0
            while self._queue and records < limit:
                item = self._queue.popleft()
                taken.append(item)
                records += len(item[2])
            self._buffered -= records
            if self._queue:
                self._oldest_us = self._queue[0][3]
            self._cond.notify_all()  # producers blocked on a full buffer
            return taken

    def _withdraw(self, ticket: int) -> None:
        """Take a failed durable emit back out of the queue, so the operation that raised leaves no trace
        (exactly as in immediate mode) and a retry records it once."""
        with self._commit, self._cond:
            for index, item in enumerate(self._queue):
                if item[0] == ticket:
                    del self._queue[index]
                    self._buffered -= len(item[2])
                    break

    def _commit_one_batch(self) -> None:
        with self._commit:
            items = self._take(self.batch_size)
            if items:
                self._commit_items(items)

    def _commit_losses(self) -> None:
        """Record losses of sessions that emitted nothing after them (caller must not hold ``_commit``)."""
        with self._commit:
            with self._cond:
                if self._queue or not self._lost:
                    return
                losses = list(self._lost.values())
                self._lost.clear()
                now = self._clock.now_us()
                done = self._done_ticket
            # Each loss becomes an item of its own, re-creating the gap record in _commit_items.
            items: list[_Item] = [(done, span, (), now) for _count, _ticket, span in losses]
            with self._cond:
                for count, ticket, span in losses:
                    self._lost[span.session_id] = [count, min(ticket, done), span]
            self._commit_items(items)

    def _drain(self, through: int) -> None:
        """Chain and store every queued item up to ticket ``through`` (as the commit leader)."""
        with self._commit:
            while self._done_ticket < through:
                items = self._take(self.batch_size)
                if not items:
                    break
                self._commit_items(items)

    def _commit_items(self, items: list[_Item]) -> None:
        """Chain and write one batch (caller holds ``_commit``). On a head conflict the batch is chained again
        from the stored heads; on a storage failure it is retried a few times, then put back at the front of
        the queue and ``StorageUnavailableError`` is raised, so nothing is lost and nobody waits forever."""
        batches: list[tuple[Span, list[Record], int]] = []
        gaps: list[list[Any]] = []  # the losses this batch records (given back if the write fails)
        for ticket, span, records, time_us in items:
            batch = list(records)
            if self._lost:
                with self._cond:
                    loss = self._lost.get(span.session_id)
                    if loss is not None and ticket >= loss[1]:
                        del self._lost[span.session_id]
                        gaps.append(loss)
                        batch.insert(
                            0, Record("trace.gap", {"lost_events": loss[0], "reason": "buffer_overflow"})
                        )
            batches.append((span, batch, time_us))
        delay = 0.001
        for _attempt in range(8):
            heads = self._heads
            pending: dict[str, ChainHead] = {}
            events: list[TraceEvent] = []
            for span, batch, time_us in batches:
                sid = span.session_id
                head = pending.get(sid) or heads.get(sid) or self.storage.head(sid)
                chained = chain_records(span, batch, head, format_timestamp(time_us), self._new_id)
                events.extend(chained)
                pending[sid] = (chained[-1].sequence, chained[-1].event_hash)
            try:
                self.storage.append(events)
            except ChainConflictError:
                for sid in pending:  # another writer moved these heads: re-read them from storage
                    self._heads.pop(sid, None)
                continue
            except Exception as exc:  # retry: losing audit events is not an option
                self._failure = exc
                time.sleep(delay)
                delay = min(delay * 4, 0.25)
                continue
            self._failure = None
            self._heads.update(pending)
            with self._cond:
                self._processed += sum(len(batch) for _s, batch, _t in batches)
                self._written += len(events)
                self._done_ticket = items[-1][0]
                self._cond.notify_all()
            return
        with self._cond:  # give the batch back, in order, for a later retry
            for item in reversed(items):
                if item[2]:  # a lone gap (no records of its own) is re-created from the loss below
                    self._queue.appendleft(item)
            self._buffered += sum(len(item[2]) for item in items)
            if self._queue:
                self._oldest_us = self._queue[0][3]
            for count, ticket, span in gaps:
                loss = self._lost.get(span.session_id)
                if loss is None:
                    self._lost[span.session_id] = [count, ticket, span]
                else:
                    loss[0] += count
                    loss[1] = min(loss[1], ticket)
        failure = self._failure
        raise StorageUnavailableError(
            f"trace storage keeps failing ({type(failure).__name__}); the events stay buffered"
        ) from failure

    def _step(self) -> bool:
        """One round of the background thread: wait for work (at most flush_interval), then commit it in
        short chunks. Returns False once closed and empty."""
        with self._cond:
            if self._buffered < self.batch_size and not self._closed and not self._flush_requested:
                self._cond.wait(self.flush_interval)
            self._flush_requested = False
            if self._closed and not self._queue and not self._lost:
                return False
            target = self._next_ticket - 1
        # Short chunks, yielding the GIL between them, so the hot path never waits long for it.
        while self._done_ticket < target:
            try:
                with self._commit:
                    items = self._take(self.chunk_size)
                    if not items:
                        break
                    self._commit_items(items)
            except StorageUnavailableError:
                time.sleep(0.5)  # storage is down; the batch is back in the queue
                break
            time.sleep(0)
        if self._lost and not self._queue:
            try:
                self._commit_losses()
            except StorageUnavailableError:
                time.sleep(0.5)
        return True

    def _start_thread(self) -> None:
        # The thread holds the processor only weakly between rounds, so an abandoned runtime (never closed)
        # is collected and its thread ends instead of living on.
        self._thread = threading.Thread(
            target=_thread_main, args=(weakref.ref(self),), name="cra-trace-processor", daemon=True
        )
        self._thread.start()

    def _after_fork_in_child(self) -> None:
        # The thread is gone and the queue holds the parent's records (the parent writes them): start clean.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._commit = threading.Lock()
        self._queue = deque()
        self._buffered = 0
        self._heads = {}
        self._lost = {}
        self._done_ticket = self._next_ticket - 1  # the parent's unfinished tickets are the parent's to write
        if not self._closed:
            self._start_thread()

    # --- control ------------------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Make everything emitted before this call durable. Returns False if ``timeout`` (seconds) ran out
        first (the work continues in the background)."""
        with self._cond:
            target = self._next_ticket - 1
        if timeout is None:
            self._drain(target)  # the caller commits inline
            self._commit_losses()
            return True
        # With a deadline the caller never commits itself (a hung storage would hold it past the deadline):
        # the background thread, or a one-off worker when there is none, does the work while the caller waits.
        deadline = time.monotonic() + timeout
        thread = self._thread
        if thread is None or not thread.is_alive():
            threading.Thread(
                target=self._flush_worker, args=(target,), name="cra-trace-flush", daemon=True
            ).start()
        with self._cond:
            self._flush_requested = True
            self._cond.notify_all()
            while self._done_ticket < target or (self._lost and not self._queue):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _flush_worker(self, target: int) -> None:
        with contextlib.suppress(StorageUnavailableError):  # the records stay buffered; flush reports False
            self._drain(target)
            self._commit_losses()

    def read(self, session_id: str, **filters: Any) -> list[TraceEvent]:
        """A session's events, after flushing what was emitted before the call."""
        self.flush()
        return self.storage.read(session_id, **filters)

    def forget(self, session_id: str) -> None:
        """Drop cached state for a session (after retention deleted it)."""
        with self._commit:
            self._heads.pop(session_id, None)

    def known_head(self, session_id: str) -> str | None:
        """The last event hash this processor wrote for the session (None if it wrote none)."""
        head = self._heads.get(session_id)
        return head[1] if head is not None else None

    def close(self, timeout: float | None = None) -> None:
        """Flush, stop the thread. Idempotent. If the flush fails (storage down) the processor still closes
        and the error is raised, so the caller knows records were left unwritten."""
        if self._closed:
            return
        try:
            if not self.flush(timeout):
                with self._cond:
                    left = self._buffered
                raise StorageUnavailableError(
                    f"the trace processor closed with {left} records not yet stored (flush timed out)",
                    details={"buffered": left},
                )
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join(timeout)
            _LIVE.discard(self)

    def stats(self) -> dict[str, Any]:
        """``buffered``, ``pressure`` (0..1), ``processed``, ``written``, ``dropped``, ``lag_ms``, ``failing``."""
        with self._cond:
            lag = (self._clock.now_us() - self._oldest_us) / 1000 if self._queue else 0.0
            return {
                "mode": "deferred",
                "buffered": self._buffered,
                "capacity": self.max_buffered,
                "pressure": min(1.0, self._buffered / self.max_buffered),
                "processed": self._processed,
                "written": self._written,
                "dropped": self._dropped,
                "lag_ms": max(0.0, lag),
                "failing": self._failure is not None,
                "overflow": self.overflow,
            }


def _thread_main(ref: weakref.ref[DeferredTracer]) -> None:
    while True:
        tracer = ref()
        if tracer is None or not tracer._step():
            return
        del tracer  # hold it only while working


_LIVE: weakref.WeakSet[DeferredTracer] = weakref.WeakSet()


def _reset_in_child() -> None:
    for tracer in list(_LIVE):
        tracer._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_in_child)


@atexit.register
def _flush_all_at_exit() -> None:
    for tracer in list(_LIVE):
        with contextlib.suppress(Exception):  # at exit there is no caller left to tell
            tracer.close(timeout=10)
