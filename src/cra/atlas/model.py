"""The immutable Atlas model (SPEC 1): what a loaded, validated Atlas holds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

__all__ = ["Action", "Atlas", "Capability", "ContextPack", "Policy", "RateLimitSpec", "build_atlas", "thaw"]


def _frozen(value: Any) -> Any:
    """A read-only deep view: dicts become mapping proxies and lists tuples, so nobody can edit an Atlas."""
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """A plain, mutable JSON copy of a frozen value."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class RateLimitSpec:
    """An action's own ``rate_limit``: ``max_calls`` per sliding ``window_seconds``."""

    max_calls: int
    window_seconds: int


@dataclass(frozen=True, slots=True)
class Action:
    """An action an agent may ask to execute."""

    action_id: str
    name: str
    description: str
    parameters_schema: Mapping[str, Any] | None = None
    returns_schema: Mapping[str, Any] | None = None
    risk_tier: str = "low"
    idempotent: bool = False
    requires_confirmation: bool = False
    executor: str | None = None
    timeout_seconds: int = 30
    rate_limit: RateLimitSpec | None = None


@dataclass(frozen=True, slots=True)
class Capability:
    """A named group of actions (and the context packs that go with them)."""

    capability_id: str
    name: str
    description: str = ""
    actions: tuple[str, ...] = ()
    context_packs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ContextPack:
    """Context documents injected into resolutions whose conditions they match."""

    pack_id: str
    name: str
    files: tuple[str, ...]
    description: str = ""
    priority: int = 100
    conditions: Mapping[str, Any] | None = None
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """A governance rule: ``allow``, ``deny``, ``require_approval``, ``rate_limit``, ``budget`` (or ``scope``,
    accepted for schema compatibility and not evaluated)."""

    policy_id: str
    type: str
    actions: tuple[str, ...] | None = None
    priority: int = 0
    conditions: Mapping[str, Any] | None = None
    parameters: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    name: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class Atlas:
    """A loaded, validated, immutable Atlas.

    ``digest`` is the SHA-256 of the canonical manifest plus context files; it is recorded in every
    session's trace so a decision can be replayed against exactly this content.
    """

    atlas_id: str
    version: str
    name: str
    description: str
    digest: str
    actions: tuple[Action, ...]
    policies: tuple[Policy, ...]
    context_packs: tuple[ContextPack, ...]
    capabilities: tuple[Capability, ...]
    files: Mapping[str, str]
    warnings: tuple[str, ...]
    source: str | None
    _manifest_json: bytes = field(repr=False)

    @property
    def manifest(self) -> dict[str, Any]:
        """A fresh copy of the (merged) manifest; editing it changes nothing here."""
        manifest: dict[str, Any] = orjson.loads(self._manifest_json)
        return manifest

    def action(self, action_id: str) -> Action | None:
        """The action with this id, or None."""
        for action in self.actions:
            if action.action_id == action_id:
                return action
        return None

    def summary(self) -> dict[str, Any]:
        """``{atlas_id, version, name, digest, action_count, policy_count}`` for listings and traces."""
        return {
            "atlas_id": self.atlas_id,
            "version": self.version,
            "name": self.name,
            "description": self.description,
            "digest": self.digest,
            "action_count": len(self.actions),
            "policy_count": len(self.policies),
            "context_pack_count": len(self.context_packs),
        }


def build_atlas(
    manifest: dict[str, Any], files: Mapping[str, str], digest: str, warnings: list[str], source: str | None
) -> Atlas:
    """Build the model from a manifest that passed validation."""
    actions = []
    for raw in manifest.get("actions", []):
        limit = raw.get("rate_limit")
        actions.append(
            Action(
                action_id=raw["action_id"],
                name=raw["name"],
                description=raw["description"],
                parameters_schema=_frozen(raw["parameters_schema"]) if "parameters_schema" in raw else None,
                returns_schema=_frozen(raw["returns_schema"]) if "returns_schema" in raw else None,
                risk_tier=raw.get("risk_tier", "low"),
                idempotent=raw.get("idempotent", False),
                requires_confirmation=raw.get("requires_confirmation", False),
                executor=raw.get("executor"),
                timeout_seconds=raw.get("timeout_seconds", 30),
                rate_limit=RateLimitSpec(limit["max_calls"], limit["window_seconds"]) if limit else None,
            )
        )
    policies = tuple(
        Policy(
            policy_id=raw["policy_id"],
            type=raw["type"],
            actions=tuple(raw["actions"]) if "actions" in raw else None,
            priority=raw.get("priority", 0),
            conditions=_frozen(raw.get("conditions")),
            parameters=_frozen(raw.get("parameters", {})),
            name=raw.get("name", ""),
            description=raw.get("description", ""),
        )
        for raw in manifest.get("policies", [])
    )
    packs = tuple(
        ContextPack(
            pack_id=raw["pack_id"],
            name=raw["name"],
            files=tuple(raw["files"]),
            description=raw.get("description", ""),
            priority=raw.get("priority", 100),
            conditions=_frozen(raw.get("conditions")),
            max_tokens=raw.get("max_tokens"),
        )
        for raw in manifest.get("context_packs", [])
    )
    capabilities = tuple(
        Capability(
            capability_id=raw["capability_id"],
            name=raw["name"],
            description=raw.get("description", ""),
            actions=tuple(raw.get("actions", ())),
            context_packs=tuple(raw.get("context_packs", ())),
        )
        for raw in manifest.get("capabilities", [])
    )
    return Atlas(
        atlas_id=manifest["atlas_id"],
        version=manifest["version"],
        name=manifest["name"],
        description=manifest["description"],
        digest=digest,
        actions=tuple(actions),
        policies=policies,
        context_packs=packs,
        capabilities=capabilities,
        files=MappingProxyType(dict(files)),
        warnings=tuple(warnings),
        source=source,
        _manifest_json=orjson.dumps(manifest),
    )
