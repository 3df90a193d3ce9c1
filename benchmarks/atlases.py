"""Atlases the benchmarks run against.

- ``partial_atlas()``: the 5-action Atlas of ``tests/conformance/resolve.partial.json`` (SPEC 12's
  "5-action conformance Atlas"): 4 actions allowed, 1 denied, every action with a ``parameters_schema``.
- ``generated_atlas()``: the synthetic Atlas with 200 actions and 50 policies (SPEC 12's "200 actions /
  50 policies") that ``cra bench`` measures too: one generator, in ``cra.bench``, so both always measure
  exactly the same manifest.

Both return plain manifest dicts; ``make_runtime`` loads one into a fresh ``cra.Runtime`` on a
``ManualClock`` (so resolution TTLs never expire during a run) with in-memory trace storage.
"""

from __future__ import annotations

import copy
from typing import Any

import cra
from cra.bench import generated_manifest, partial_manifest

__all__ = ["generated_atlas", "make_runtime", "partial_atlas"]


def partial_atlas() -> dict[str, Any]:
    """The 5-action Atlas of the ``resolve.partial`` conformance case (a fresh copy)."""
    return partial_manifest()


def generated_atlas() -> dict[str, Any]:
    """The 200-action / 50-policy Atlas (a fresh copy)."""
    return generated_manifest()


def make_runtime(manifest: dict[str, Any], **kwargs: Any) -> cra.Runtime:
    """A fresh runtime (ManualClock, memory:// storage unless given) with ``manifest`` loaded."""
    kwargs.setdefault("clock", cra.ManualClock())
    runtime = cra.Runtime(**kwargs)
    runtime.load_atlas(copy.deepcopy(manifest))
    return runtime
