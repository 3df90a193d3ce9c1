"""What the commands that talk to ``cra serve`` share: the ``--url`` / ``--api-key`` / ``--token`` options and
one way to turn a failed call into an exit code.

``cra.client`` needs httpx, which ships with the ``server`` extra and not with ``cli``: it is imported only
when a command actually connects, so ``cra resolve`` and friends keep working on a ``cli``-only install.

Example (in a command)::

    def command(url: UrlOption = DEFAULT_URL, api_key: ApiKeyOption = None, token: TokenOption = None):
        with connect(url, api_key, token, json_mode=False) as client:
            client.health()
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

import cra

from ._output import EXIT_USAGE, fail, fail_cra

if TYPE_CHECKING:
    from cra.client import Client

__all__ = ["ApiKeyOption", "connect", "DEFAULT_URL", "OptionalUrlOption", "TokenOption", "UrlOption"]

DEFAULT_URL = "http://127.0.0.1:8420"
"""Where ``cra serve`` listens by default (SPEC 7); the same value as ``cra.client.DEFAULT_URL``, repeated
here so that reading it does not import httpx."""

_URL_HELP = "Base URL of a `cra serve` server."

UrlOption = Annotated[
    str, typer.Option("--url", envvar="CRA_URL", metavar="URL", help=_URL_HELP, show_envvar=True)
]
"""``--url`` with a default (give it ``DEFAULT_URL``): for commands that only work against a server."""

OptionalUrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", envvar="CRA_URL", metavar="URL", help=_URL_HELP, show_envvar=True, show_default=False
    ),
]
"""``--url`` without a default: for commands where a server is one source among others, so that nothing is
fetched from a server nobody named."""

ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="CRA_API_KEY",
        metavar="KEY",
        help="API key sent as X-API-Key (from `cra keys create`).",
        show_envvar=True,
        show_default=False,
    ),
]

TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="CRA_TOKEN",
        metavar="JWT",
        help="JWT sent as a bearer token.",
        show_envvar=True,
        show_default=False,
    ),
]


@contextmanager
def connect(url: str, api_key: str | None, token: str | None, *, json_mode: bool) -> Iterator[Client]:
    """A ``cra.client.Client`` for the block; every failure of a call made in it becomes an exit.

    A ``CRAError`` answered by the server keeps its code (exit 1, via ``fail_cra``); a server that cannot be
    reached is ``SERVER_UNREACHABLE`` (exit 1); a URL that is not http(s) is a usage error (exit 2); a body
    that is not what a CRA server sends is ``BAD_RESPONSE`` (exit 1).
    """
    try:
        import httpx

        from cra.client import Client
    except ImportError as exc:  # a `cra[cli]` install without the server extra
        fail(
            f"talking to a server needs httpx: pip install 'cra[server]' ({exc})",
            code="MISSING_DEPENDENCY",
            json_mode=json_mode,
        )
    try:
        client = Client(url, api_key=api_key, token=token)
    except httpx.InvalidURL as exc:
        fail(f"not a valid URL {url!r}: {exc}", code="BAD_URL", json_mode=json_mode, exit_code=EXIT_USAGE)
    try:
        with client:
            yield client
    except cra.CRAError as exc:
        fail_cra(exc, json_mode=json_mode)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        # Raised on the first request, e.g. for "localhost:8420" without a scheme: the caller's mistake.
        fail(
            f"not a valid server URL {url!r} (expected http://host:port): {exc}",
            code="BAD_URL",
            json_mode=json_mode,
            exit_code=EXIT_USAGE,
        )
    except httpx.TransportError as exc:  # refused, DNS, timeout, connection dropped mid-answer
        reason = str(exc) or type(exc).__name__
        fail(
            f"cannot reach the CRA server at {url}: {reason} (is `cra serve` running? set --url or CRA_URL)",
            code="SERVER_UNREACHABLE",
            json_mode=json_mode,
        )
    except (ValueError, KeyError, TypeError) as exc:
        # A 2xx answer that is not JSON or lacks the fields of a CRA response: something else listens there.
        fail(
            f"the server at {url} did not answer like a CRA server ({type(exc).__name__}: {exc})",
            code="BAD_RESPONSE",
            json_mode=json_mode,
        )
