"""Atlas validation (SPEC 1): schema, then semantics, then files; every problem at once, each with its JSON
pointer. Validation is defensive: a manifest that fails the schema is still checked as far as it can be, so
one run shows the author everything to fix."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema_rs

from .._schema_errors import schema_problems
from ..policy.conditions import parse_hhmm
from ..policy.glob import compile_glob, is_glob
from ..schemas import validator

__all__ = ["AtlasReport", "Problem", "check_manifest"]

FileCheck = Callable[[str], str | None]
"""Given a context file path, an error message (or None when the file is fine)."""

SCOPES = ("session", "agent", "global")


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation problem: where (JSON pointer), what, and at which stage (schema, semantic, file)."""

    pointer: str
    message: str
    stage: str
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"pointer": self.pointer, "message": self.message, "stage": self.stage}
        if self.source is not None:
            out["source"] = self.source
        return out


@dataclass(frozen=True, slots=True)
class AtlasReport:
    """The outcome of validating an Atlas: ``valid``, every ``problem``, and ``warnings`` that do not block."""

    valid: bool
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    atlas_id: str | None = None
    version: str | None = None
    digest: str | None = None

    @property
    def error_paths(self) -> list[str]:
        """The JSON pointers of every problem, in report order."""
        return [p.pointer for p in self.problems]

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "atlas_id": self.atlas_id,
            "version": self.version,
            "digest": self.digest,
            "problems": [p.to_dict() for p in self.problems],
            "warnings": list(self.warnings),
        }


def _items(manifest: Mapping[str, Any], key: str) -> list[tuple[int, dict[str, Any]]]:
    value = manifest.get(key)
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)]


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _non_negative_number(value: Any) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    )


class _Checker:
    def __init__(self, manifest: Mapping[str, Any], check_file: FileCheck, sources: Mapping[str, str]):
        self.manifest = manifest
        self.check_file = check_file
        self.sources = sources  # pointer prefix -> file the item came from
        self.problems: list[Problem] = []
        self.warnings: list[str] = []

    def add(self, pointer: str, message: str, stage: str) -> None:
        source = next(
            (
                src
                for prefix, src in self.sources.items()
                if pointer.startswith(prefix + "/") or pointer == prefix
            ),
            None,
        )
        self.problems.append(Problem(pointer, message, stage, source))

    def duplicates(self, key: str, id_field: str) -> set[str]:
        seen: set[str] = set()
        for i, item in _items(self.manifest, key):
            value = item.get(id_field)
            if not isinstance(value, str):
                continue
            if value in seen:
                self.add(f"/{key}/{i}/{id_field}", f"duplicate {id_field} {value!r}", "semantic")
            seen.add(value)
        return seen

    def run(self) -> None:
        action_ids = self.duplicates("actions", "action_id")
        self.duplicates("policies", "policy_id")
        pack_ids = self.duplicates("context_packs", "pack_id")
        capability_ids = self.duplicates("capabilities", "capability_id")
        self.check_actions()
        self.check_capabilities(action_ids, pack_ids)
        self.check_policies(action_ids, capability_ids)
        self.check_packs()

    def check_actions(self) -> None:
        for i, action in _items(self.manifest, "actions"):
            for key in ("parameters_schema", "returns_schema"):
                schema = action.get(key)
                if isinstance(schema, dict):
                    message = _schema_error(schema)
                    if message:
                        self.add(f"/actions/{i}/{key}", f"not a valid JSON Schema: {message}", "semantic")
            limit = action.get("rate_limit")
            if isinstance(limit, dict):
                for name in ("max_calls", "window_seconds"):
                    if not _positive_int(limit.get(name)):
                        self.add(
                            f"/actions/{i}/rate_limit/{name}",
                            f"rate_limit needs a positive integer {name}",
                            "semantic",
                        )

    def check_capabilities(self, action_ids: set[str], pack_ids: set[str]) -> None:
        for i, cap in _items(self.manifest, "capabilities"):
            for j, ref in enumerate(cap.get("actions") or []):
                if isinstance(ref, str) and ref not in action_ids:
                    self.add(f"/capabilities/{i}/actions/{j}", f"unknown action {ref!r}", "semantic")
            for j, ref in enumerate(cap.get("context_packs") or []):
                if isinstance(ref, str) and ref not in pack_ids:
                    self.add(
                        f"/capabilities/{i}/context_packs/{j}", f"unknown context pack {ref!r}", "semantic"
                    )

    def check_policies(self, action_ids: set[str], capability_ids: set[str]) -> None:
        for i, policy in _items(self.manifest, "policies"):
            base = f"/policies/{i}"
            pid = policy.get("policy_id")
            for j, pattern in enumerate(policy.get("actions") or []):
                if not isinstance(pattern, str):
                    continue
                if not is_glob(pattern):
                    if pattern not in action_ids:
                        self.add(f"{base}/actions/{j}", f"unknown action {pattern!r}", "semantic")
                elif not any(compile_glob(pattern)(a) for a in action_ids):
                    self.warnings.append(
                        f"{base}/actions/{j}: glob {pattern!r} of policy {pid!r} matches no action"
                    )
            ptype = policy.get("type")
            params = policy.get("parameters")
            if ptype in ("rate_limit", "budget"):
                self.check_limit_parameters(base, ptype, params)
            elif ptype == "deny" and isinstance(params, dict) and "reason" in params:
                if not isinstance(params["reason"], str):
                    self.add(f"{base}/parameters/reason", "reason must be a string", "semantic")
            elif ptype == "scope":
                self.warnings.append(f"{base}: policy type 'scope' is accepted but not evaluated")
            self.check_conditions(f"{base}/conditions", policy.get("conditions"), capability_ids)

    def check_limit_parameters(self, base: str, ptype: str, params: Any) -> None:
        if not isinstance(params, dict):
            needs = "max_calls and window_seconds" if ptype == "rate_limit" else "max_cost"
            self.add(f"{base}/parameters", f"a {ptype} policy needs parameters ({needs})", "semantic")
            return
        if ptype == "rate_limit":
            for name in ("max_calls", "window_seconds"):
                if not _positive_int(params.get(name)):
                    self.add(f"{base}/parameters/{name}", f"{name} must be a positive integer", "semantic")
        else:
            if not _non_negative_number(params.get("max_cost")):
                self.add(f"{base}/parameters/max_cost", "max_cost must be a non-negative number", "semantic")
            if "period_seconds" in params and not _positive_int(params["period_seconds"]):
                self.add(
                    f"{base}/parameters/period_seconds",
                    "period_seconds must be a positive integer",
                    "semantic",
                )
            costs = params.get("costs")
            if costs is not None:
                if not isinstance(costs, dict):
                    self.add(f"{base}/parameters/costs", "costs must map action globs to numbers", "semantic")
                else:
                    for glob, cost in costs.items():
                        if not _non_negative_number(cost):
                            self.add(
                                f"{base}/parameters/costs/{_esc(glob)}",
                                "a cost must be a non-negative number",
                                "semantic",
                            )
        scope = params.get("scope", "session")
        if scope not in SCOPES:
            self.add(f"{base}/parameters/scope", f"scope must be one of {', '.join(SCOPES)}", "semantic")

    def check_conditions(self, base: str, conditions: Any, capability_ids: set[str]) -> None:
        if not isinstance(conditions, dict):
            return
        window = conditions.get("time_window")
        if isinstance(window, dict):
            for key in ("start", "end"):
                value = window.get(key)
                if value is None:
                    self.add(f"{base}/time_window/{key}", f"time_window needs {key} (HH:MM)", "semantic")
                    continue
                try:
                    parse_hhmm(value) if isinstance(value, str) else parse_hhmm("")
                except ValueError:
                    self.add(f"{base}/time_window/{key}", f"{key} must be HH:MM, got {value!r}", "semantic")
            tz = window.get("timezone", "UTC")
            if not isinstance(tz, str) or not _valid_zone(tz):
                self.add(f"{base}/time_window/timezone", f"unknown IANA time zone {tz!r}", "semantic")
        for j, cap in enumerate(conditions.get("capabilities") or []):
            if isinstance(cap, str) and cap not in capability_ids:
                self.warnings.append(f"{base}/capabilities/{j}: capability {cap!r} is not defined here")

    def check_packs(self) -> None:
        for i, pack in _items(self.manifest, "context_packs"):
            self.check_conditions(f"/context_packs/{i}/conditions", pack.get("conditions"), set())
            for j, path in enumerate(pack.get("files") or []):
                if not isinstance(path, str):
                    continue
                message = self.check_file(path)
                if message:
                    self.add(f"/context_packs/{i}/files/{j}", message, "file")


def _esc(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _valid_zone(name: str) -> bool:
    if not re.fullmatch(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*", name):
        return False  # also keeps ZoneInfo from reading paths outside the zone database
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _schema_error(schema: dict[str, Any]) -> str | None:
    try:
        jsonschema_rs.meta.validate(schema)
        jsonschema_rs.Draft202012Validator(schema, offline=True)
    except (jsonschema_rs.ValidationError, ValueError, jsonschema_rs.ReferencingError) as exc:
        return str(exc).splitlines()[0]
    return None


def check_manifest(
    manifest: Any, check_file: FileCheck, sources: Mapping[str, str] | None = None
) -> tuple[list[Problem], list[str]]:
    """Validate a (merged) manifest: schema problems, then semantic ones, then file ones."""
    if not isinstance(manifest, dict):
        return [Problem("", "an Atlas manifest must be a JSON object", "schema")], []
    problems = [
        Problem(p["pointer"], p["message"], "schema")
        for p in schema_problems(validator("atlas-manifest"), manifest)
    ]
    checker = _Checker(manifest, check_file, sources or {})
    checker.run()
    return problems + checker.problems, checker.warnings
