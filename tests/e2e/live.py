"""A real uvicorn server on loopback, in a thread, for end-to-end tests with a real HTTP client.

``running(app)`` serves an ASGI app on 127.0.0.1 (a port the OS picks) until the ``with`` block ends and yields
its base URL. tests/server's ``live_server`` fixture and the CLI tests use it too.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A port nothing listens on right now (for tests of an unreachable server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Server(uvicorn.Server):
    """uvicorn's server, telling a waiting thread when start-up is over (whether it worked or not)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()

    def run_in_thread(self) -> None:
        try:
            self.run()
        finally:
            self.ready.set()  # a start-up that failed (sys.exit in uvicorn) must not leave the test waiting

    def port(self) -> int:
        return int(self.servers[0].sockets[0].getsockname()[1])


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 until the block ends; yields ``http://127.0.0.1:<port>``."""
    server = _Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,  # the OS picks a free port: no clash between parallel runs
            log_level="warning",
            log_config=None,  # leave the test process's logging (pytest's capture) alone
            lifespan="on",
            ws="websockets-sansio",
        )
    )
    thread = threading.Thread(target=server.run_in_thread, name="cra-test-server", daemon=True)
    thread.start()
    try:
        if not server.ready.wait(START_TIMEOUT) or not server.started:
            raise RuntimeError("the test server did not start")
        yield f"http://127.0.0.1:{server.port()}"
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT)
        assert not thread.is_alive(), "the test server did not stop"
