"""The authenticated caller of ``cra serve`` and its scopes (shared by API keys and JWT)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ..errors import UnauthorizedError

__all__ = [
    "ANONYMOUS_ADMIN",
    "MAX_ID_LENGTH",
    "SCOPE_ADMIN",
    "SCOPE_AGENT",
    "SCOPES",
    "Principal",
    "check_identifier",
    "unauthorized",
]

SCOPE_AGENT: Final = "agent"
"""Only its own sessions, traces and approvals (a session belongs to the agent that created it)."""
SCOPE_ADMIN: Final = "admin"
"""Sees everything; manages atlases and decides approvals."""
SCOPES: Final = (SCOPE_AGENT, SCOPE_ADMIN)
"""Every scope a credential may carry."""

MAX_ID_LENGTH = 255  # the CARP schema's limit on agent_id; names share it
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_identifier(value: object, what: str) -> str:
    """An agent id or key name: 1..255 characters, no control characters."""
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH or _CONTROL.search(value):
        raise ValueError(f"{what} must be 1 to {MAX_ID_LENGTH} characters without control characters")
    return value


def unauthorized(reason: str, message: str) -> UnauthorizedError:
    # details.reason lets clients and tests tell the failures apart without parsing the message.
    return UnauthorizedError(message, details={"reason": reason})


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    subject: str
    """The agent id for scope ``agent``; the key name or the JWT ``sub`` for ``admin``."""
    scope: str
    """``agent`` or ``admin``."""
    credential_id: str
    """Stable id of the credential (an API key id, or ``jwt:<sub>``): the per-credential rate-limit key."""

    @property
    def is_admin(self) -> bool:
        """True for the admin scope."""
        return self.scope == SCOPE_ADMIN

    @property
    def agent_filter(self) -> str | None:
        """The agent whose resources this caller may see: ``None`` (all) for admin, else the subject."""
        return None if self.scope == SCOPE_ADMIN else self.subject


ANONYMOUS_ADMIN: Final = Principal(subject="anonymous", scope=SCOPE_ADMIN, credential_id="anonymous")
"""Every request's principal when auth is off, which the server allows only on a loopback address."""
