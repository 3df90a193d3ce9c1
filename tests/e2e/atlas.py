"""The Atlas the end-to-end tests serve: one action of each kind of verdict."""

from __future__ import annotations

from typing import Any

_ID_SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "string", "pattern": "^T-[0-9]+$"}},
    "required": ["id"],
    "additionalProperties": False,
}

APPROVAL_ATLAS: dict[str, Any] = {
    "atlas_version": "1.0",
    "atlas_id": "cra.support",
    "version": "1.0.0",
    "name": "Support",
    "description": "Support desk actions for end-to-end tests",
    "policies": [
        {"policy_id": "no-delete", "type": "deny", "actions": ["ticket.delete"]},
        {"policy_id": "close-needs-approval", "type": "require_approval", "actions": ["ticket.close"]},
        {
            "policy_id": "two-replies",
            "type": "rate_limit",
            "actions": ["ticket.reply"],
            "parameters": {"max_calls": 2, "window_seconds": 3600},
        },
        {"policy_id": "allow-tickets", "type": "allow", "actions": ["ticket.*"]},
    ],
    "actions": [
        {
            "action_id": f"ticket.{name}",
            "name": f"ticket.{name}",
            "description": f"{name} a ticket",
            "risk_tier": "low",
            "parameters_schema": _ID_SCHEMA,
        }
        for name in ("read", "reply", "close", "delete")
    ],
}
