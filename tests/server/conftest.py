"""Fixtures for the server tests: a real uvicorn server on an ephemeral loopback port, and a runtime with the
example Atlas loaded.

``live_server(runtime, config=None, authenticator=None, **create_app_kwargs)`` starts ``create_app(...)``
under uvicorn in a background thread and returns its base URL (``http://127.0.0.1:<port>``); every server
it started is stopped at teardown. The runtime stays the test's to close (``example_runtime`` does that).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol

import pytest

import cra
from cra.server.app import create_app
from cra.server.auth import Authenticator
from cra.server.config import ServerConfig
from e2e.live import running

EXAMPLE_ATLAS = Path(cra.__file__).parent / "cli" / "example_atlas"
"""The Atlas ``cra init`` writes (agent ``support-bot``; actions ticket.read, customer.delete, ...)."""


class LiveServer(Protocol):
    """Start a server; returns its base URL."""

    def __call__(
        self,
        runtime: cra.Runtime,
        config: ServerConfig | None = None,
        authenticator: Authenticator | None = None,
        **create_app_kwargs: Any,
    ) -> str: ...


@pytest.fixture
def live_server() -> Iterator[LiveServer]:
    """A factory of real servers on 127.0.0.1 (see the module docstring)."""
    with ExitStack() as servers:

        def start(
            runtime: cra.Runtime,
            config: ServerConfig | None = None,
            authenticator: Authenticator | None = None,
            **create_app_kwargs: Any,
        ) -> str:
            return servers.enter_context(
                running(create_app(runtime, config, authenticator, **create_app_kwargs))
            )

        yield start


@pytest.fixture
def example_runtime() -> Iterator[cra.Runtime]:
    """A runtime (memory storage, deferred tracing) with the example Atlas loaded; closed at teardown."""
    runtime = cra.Runtime()
    try:
        runtime.load_atlas(EXAMPLE_ATLAS)
        yield runtime
    finally:
        runtime.close()
