"""The packaged wire schemas (JSON Schema Draft 2020-12), compiled once on first use.

They are copies of the project's shared schemas, extended only where SPEC.md requires more than the shared
copy allows (docs/decisions/0002-schema-extensions.md): the approval, heartbeat and gap event types,
``remaining`` in a resolution's rate limit, and ``HH:MM`` (a pattern, not ``format: time``, which demands
seconds and an offset) for ``time_window`` start and end.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import jsonschema_rs

__all__ = ["load_schema", "validator"]

SCHEMA_NAMES = ("atlas-manifest", "carp-request", "carp-resolution", "trace-event")


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """The schema document ``<name>.schema.json`` (one of ``SCHEMA_NAMES``)."""
    if name not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    text = resources.files(__package__).joinpath(f"{name}.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def validator(name: str) -> jsonschema_rs.Draft202012Validator:
    """A compiled validator for a packaged schema, with ``format`` checks on."""
    return jsonschema_rs.Draft202012Validator(load_schema(name), validate_formats=True, offline=True)
