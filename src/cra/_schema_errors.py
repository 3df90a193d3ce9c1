"""Turning JSON Schema errors into JSON pointers that name the offending member."""

from __future__ import annotations

from typing import Any

import jsonschema_rs

__all__ = ["SchemaProblem", "schema_problems"]

SchemaProblem = dict[str, str]


def _pointer(parts: list[str | int]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def schema_problems(
    validator: jsonschema_rs.Validator, instance: Any, prefix: str = ""
) -> list[SchemaProblem]:
    """Every error as ``{"pointer", "message"}``, sorted by pointer.

    A missing required member is reported at the member's own pointer (``/task``, not ``""``) and an
    unexpected member at its pointer, so that callers can highlight the exact field.
    """
    problems: dict[tuple[str, str], SchemaProblem] = {}
    for error in validator.iter_errors(instance):
        parts: list[str | int] = list(error.instance_path)
        kind = error.kind
        targets: list[list[str | int]]
        if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
            targets = [[*parts, kind.property]]
        elif isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties):
            targets = [[*parts, name] for name in kind.unexpected] or [parts]
        else:
            targets = [parts]
        for target in targets:
            pointer = prefix + _pointer(target)
            problems.setdefault((pointer, error.message), {"pointer": pointer, "message": error.message})
    return sorted(problems.values(), key=lambda p: p["pointer"])
