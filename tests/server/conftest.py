"""Fixtures for the server tests: a real uvicorn server on an ephemeral loopback port, and a runtime with the
example Atlas loaded.

``live_server(runtime, config=None, authenticator=None, **create_app_kwargs)`` starts ``create_app(...)``
under uvicorn in a background thread and returns its base URL (``http://127.0.0.1:<port>``); every server
it started is stopped at teardown. The runtime stays the test's to close (``example_runtime`` does that).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import uvicorn

import cra
from cra.server.app import create_app
from cra.server.auth import Authenticator
from cra.server.config import ServerConfig

EXAMPLE_ATLAS = Path(cra.__file__).parent / "cli" / "example_atlas"
"""The Atlas ``cra init`` writes (agent ``support-bot``; actions ticket.read, customer.delete, ...)."""

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0


class LiveServer(Protocol):
    """Start a server; returns its base URL."""

    def __call__(
        self,
        runtime: cra.Runtime,
        config: ServerConfig | None = None,
        authenticator: Authenticator | None = None,
        **create_app_kwargs: Any,
    ) -> str: ...


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
        sock = self.servers[0].sockets[0]
        return int(sock.getsockname()[1])


@pytest.fixture
def live_server() -> Iterator[LiveServer]:
    """A factory of real servers on 127.0.0.1 (see the module docstring)."""
    running: list[tuple[_Server, threading.Thread]] = []

    def start(
        runtime: cra.Runtime,
        config: ServerConfig | None = None,
        authenticator: Authenticator | None = None,
        **create_app_kwargs: Any,
    ) -> str:
        app = create_app(runtime, config, authenticator, **create_app_kwargs)
        server = _Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=0,  # the OS picks a free port: no clash between parallel runs
                log_level="warning",
                log_config=None,  # leave the test process's logging (pytest's capture) alone
                lifespan="on",
                loop="asyncio",
                http="h11",
                ws="websockets-sansio",
            )
        )
        thread = threading.Thread(target=server.run_in_thread, name="cra-test-server", daemon=True)
        thread.start()
        running.append((server, thread))
        if not server.ready.wait(_START_TIMEOUT) or not server.started:
            raise RuntimeError("the test server did not start")
        return f"http://127.0.0.1:{server.port()}"

    yield start
    for server, _thread in running:
        server.should_exit = True
    for _server, thread in running:
        thread.join(_STOP_TIMEOUT)
        assert not thread.is_alive(), "the test server did not stop"


@pytest.fixture
def example_runtime() -> Iterator[cra.Runtime]:
    """A runtime (memory storage, deferred tracing) with the example Atlas loaded; closed at teardown."""
    runtime = cra.Runtime()
    try:
        runtime.load_atlas(EXAMPLE_ATLAS)
        yield runtime
    finally:
        runtime.close()
