"""Choosing the context blocks of a resolution (SPEC 3.2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .policy.conditions import EvalContext
from .policy.engine import CompiledAtlas, CompiledPack

__all__ = ["select_context"]


def _included(
    pack: CompiledPack, ctx: EvalContext, selected: frozenset[str] | None, hints: frozenset[str]
) -> bool:
    if pack.pack.pack_id in hints:
        return True  # a context hint naming the pack forces it in
    if pack.capability_ids and selected is not None and pack.capability_ids.isdisjoint(selected):
        return False
    return pack.conditions is None or pack.conditions.holds(ctx, ctx.task_rank)


def select_context(
    atlases: Sequence[CompiledAtlas],
    ctx: EvalContext,
    selected: frozenset[str] | None,
    hints: frozenset[str],
    max_context_tokens: int | None,
) -> list[tuple[dict[str, Any], bool]]:
    """Every block of every included pack in injection order (priority descending, then manifest order),
    each paired with whether it is injected (False: dropped for the token budget).

    A pack's ``max_tokens`` drops its own last files first; then the request's ``max_context_tokens`` drops
    the lowest-priority blocks first.
    """
    packs = [
        (pack, atlas_order)
        for atlas_order, compiled in enumerate(atlases)
        for pack in compiled.packs
        if _included(pack, ctx, selected, hints)
    ]
    packs.sort(key=lambda item: (-item[0].pack.priority, item[1], item[0].order))
    blocks: list[list[Any]] = []  # [block, injected]
    for pack, _ in packs:
        entries = [[block, True] for block in pack.blocks]
        _drop_from_end(entries, pack.pack.max_tokens)
        blocks.extend(entries)
    _drop_from_end(blocks, max_context_tokens)
    return [(block, keep) for block, keep in blocks]


def _drop_from_end(entries: list[list[Any]], cap: int | None) -> None:
    """Mark blocks as dropped, last (lowest priority) first, until the injected ones fit in ``cap``."""
    if cap is None:
        return
    total = sum(block["token_estimate"] for block, keep in entries if keep)
    for entry in reversed(entries):
        if total <= cap:
            return
        if entry[1]:
            entry[1] = False
            total -= entry[0]["token_estimate"]
