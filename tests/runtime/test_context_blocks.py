"""Context blocks of a resolution (SPEC 3.2): selection, order, token estimates and token budgets."""

from __future__ import annotations

from typing import Any

import pytest

import cra
from cra.errors import InvalidRequestError, PayloadTooLargeError

from .helpers import action, manifest, payloads, policy, snapshot


def pack(pack_id: str, *files: str, **fields: Any) -> dict[str, Any]:
    return {"pack_id": pack_id, "name": pack_id, "files": list(files), **fields}


def load(rt: cra.Runtime, packs: list[dict[str, Any]], files: dict[str, str], **kw: Any) -> cra.Session:
    rt.load_atlas(
        manifest(
            actions=[action("shop.read")], policies=[policy("allow-all", "allow")], context_packs=packs, **kw
        ),
        files=files,
    )
    return rt.create_session("agent-1", "goal")


def block_ids(resolution: cra.Resolution) -> list[str]:
    return [b.block_id for b in resolution.context_blocks]


def test_blocks_are_ordered_by_priority_then_manifest_order(rt: cra.Runtime) -> None:
    session = load(
        rt,
        [
            pack("low", "l.md", priority=10),
            pack("mid-1", "m1.md", "m2.md", priority=50),
            pack("default", "d.md"),
            pack("mid-2", "m3.md", priority=50),
        ],
        {"l.md": "l", "m1.md": "m1", "m2.md": "m2", "d.md": "d", "m3.md": "m3"},
    )
    resolution = rt.resolve(session.session_id)
    assert block_ids(resolution) == ["default/d.md", "mid-1/m1.md", "mid-1/m2.md", "mid-2/m3.md", "low/l.md"]
    assert [b.priority for b in resolution.context_blocks] == [100, 50, 50, 50, 10]
    injected = payloads(rt, session.session_id, "context.injected")
    assert [p["block_id"] for p in injected] == block_ids(resolution)


def test_block_fields_content_type_and_token_estimate(rt: cra.Runtime) -> None:
    files = {"docs/a.md": "123456789", "docs/b.json": "{}", "docs/c.txt": "12345678", "docs/d": ""}
    session = load(rt, [pack("docs", *files)], files)
    blocks = [b.to_dict() for b in rt.resolve(session.session_id).context_blocks]
    assert blocks[0] == {
        "block_id": "docs/docs/a.md",
        "source": "org.example.shop",
        "content_type": "text/markdown",
        "content": "123456789",
        "priority": 100,
        "token_estimate": 3,
    }
    assert [(b["content_type"], b["token_estimate"]) for b in blocks] == [
        ("text/markdown", 3),
        ("application/json", 1),
        ("text/plain", 2),
        ("text/plain", 0),
    ]
    injected = payloads(rt, session.session_id, "context.injected")[0]
    assert injected == {"block_id": "docs/docs/a.md", "source": "org.example.shop", "token_count": 3}


def test_token_estimate_counts_characters_not_bytes(rt: cra.Runtime) -> None:
    session = load(rt, [pack("p", "a.md")], {"a.md": "ééééé"})  # 5 characters, 10 bytes
    assert rt.resolve(session.session_id).context_blocks[0].token_estimate == 2


def test_pack_conditions_use_the_task_risk(rt: cra.Runtime) -> None:
    rt.load_atlas(
        manifest(
            actions=[action("shop.nuke", risk_tier="critical")],
            policies=[policy("allow-all", "allow")],
            context_packs=[
                pack("always", "a.md"),
                pack("high-risk", "h.md", conditions={"risk_tiers": ["high", "critical"]}),
                pack("prod", "p.md", conditions={"context_matches": {"env": "prod"}}),
                pack("bots", "b.md", conditions={"agents": ["bot-*"]}),
            ],
        ),
        files={"a.md": "a", "h.md": "h", "p.md": "p", "b.md": "b"},
    )
    session = rt.create_session("agent-1", "goal")
    sid = session.session_id
    assert block_ids(rt.resolve(sid)) == ["always/a.md"]  # the critical action does not raise a pack's risk
    assert block_ids(rt.resolve(sid, risk_tier="high")) == ["always/a.md", "high-risk/h.md"]
    assert block_ids(rt.resolve(sid, context={"env": "prod"})) == ["always/a.md", "prod/p.md"]


def test_pack_time_window_follows_the_clock(rt: cra.Runtime, clock: cra.ManualClock) -> None:
    window = {"start": "09:00", "end": "17:00", "timezone": "UTC"}
    session = load(rt, [pack("office", "o.md", conditions={"time_window": window})], {"o.md": "o"})
    assert block_ids(rt.resolve(session.session_id)) == []
    clock.set("2025-01-01T09:00:00Z")
    assert block_ids(rt.resolve(session.session_id)) == ["office/o.md"]


def capability_atlas() -> dict[str, Any]:
    return manifest(
        actions=[action("shop.read"), action("shop.write")],
        capabilities=[
            {
                "capability_id": "shop.view",
                "name": "View",
                "actions": ["shop.read"],
                "context_packs": ["viewing"],
            },
            {
                "capability_id": "shop.edit",
                "name": "Edit",
                "actions": ["shop.write"],
                "context_packs": ["editing"],
            },
        ],
        policies=[policy("allow-all", "allow")],
        context_packs=[
            pack("general", "g.md"),
            pack("viewing", "v.md"),
            pack("editing", "e.md"),
            pack("secret", "s.md", conditions={"risk_tiers": ["critical"]}),
        ],
    )


CAPABILITY_FILES = {"g.md": "g", "v.md": "v", "e.md": "e", "s.md": "s"}


def test_capability_listed_packs_need_their_capability_selected(rt: cra.Runtime) -> None:
    rt.load_atlas(capability_atlas(), files=CAPABILITY_FILES)
    sid = rt.create_session("agent-1", "goal").session_id
    assert block_ids(rt.resolve(sid)) == ["general/g.md", "viewing/v.md", "editing/e.md"]
    assert block_ids(rt.resolve(sid, required_capabilities=["shop.view"])) == ["general/g.md", "viewing/v.md"]
    assert block_ids(rt.resolve(sid, required_capabilities=["shop.edit"])) == ["general/g.md", "editing/e.md"]


def test_context_hints_naming_a_pack_force_it_in(rt: cra.Runtime) -> None:
    rt.load_atlas(capability_atlas(), files=CAPABILITY_FILES)
    sid = rt.create_session("agent-1", "goal").session_id
    resolution = rt.resolve(
        sid, required_capabilities=["shop.view"], context_hints=["secret", "editing", "nope"]
    )
    assert block_ids(resolution) == ["general/g.md", "viewing/v.md", "editing/e.md", "secret/s.md"]


def test_context_hints_in_a_carp_request_force_packs_in(rt: cra.Runtime) -> None:
    from .helpers import carp

    rt.load_atlas(capability_atlas(), files=CAPABILITY_FILES)
    session = rt.create_session("agent-1", "goal")
    request = carp(rt, session, task={"context_hints": ["secret"], "required_capabilities": ["shop.edit"]})
    assert block_ids(rt.resolve_request(request)) == ["general/g.md", "editing/e.md", "secret/s.md"]


def test_pack_max_tokens_drops_its_last_files_and_records_redactions(rt: cra.Runtime) -> None:
    files = {"1.md": "x" * 16, "2.md": "x" * 16, "3.md": "x" * 16, "other.md": "x" * 400}
    session = load(
        rt, [pack("capped", "1.md", "2.md", "3.md", max_tokens=9), pack("other", "other.md")], files
    )
    resolution = rt.resolve(session.session_id)
    assert block_ids(resolution) == ["capped/1.md", "capped/2.md", "other/other.md"]
    events = [e for e in rt.get_trace(session.session_id) if e.event_type.startswith("context.")]
    assert [(e.event_type, e.payload["block_id"]) for e in events] == [
        ("context.injected", "capped/1.md"),
        ("context.injected", "capped/2.md"),
        ("context.redacted", "capped/3.md"),
        ("context.injected", "other/other.md"),
    ]
    assert dict(events[2].payload) == {"block_id": "capped/3.md", "redaction_reason": "token_budget"}
    completed = payloads(rt, session.session_id, "carp.resolution.completed")[0]
    assert completed["context_block_count"] == 3


def test_max_context_tokens_drops_the_lowest_priority_blocks_first(rt: cra.Runtime) -> None:
    files = {"hi.md": "x" * 16, "mid.md": "x" * 16, "lo.md": "x" * 16}
    session = load(
        rt,
        [
            pack("lo", "lo.md", priority=1),
            pack("hi", "hi.md", priority=90),
            pack("mid", "mid.md", priority=50),
        ],
        files,
    )
    sid = session.session_id
    assert block_ids(rt.resolve(sid, context={"max_context_tokens": 12})) == [
        "hi/hi.md",
        "mid/mid.md",
        "lo/lo.md",
    ]
    assert block_ids(rt.resolve(sid, context={"max_context_tokens": 11})) == ["hi/hi.md", "mid/mid.md"]
    assert block_ids(rt.resolve(sid, context={"max_context_tokens": 4})) == ["hi/hi.md"]
    resolution = rt.resolve(sid, context={"max_context_tokens": 3})
    assert block_ids(resolution) == []
    last = rt.get_trace(sid)[-5:]
    assert [(e.event_type, e.payload.get("block_id")) for e in last] == [
        ("policy.evaluated", None),
        ("context.redacted", "hi/hi.md"),
        ("context.redacted", "mid/mid.md"),
        ("context.redacted", "lo/lo.md"),
        ("carp.resolution.completed", None),
    ]
    assert all(e.payload.get("redaction_reason") == "token_budget" for e in last[1:4])


def test_max_context_tokens_of_zero_injects_nothing(rt: cra.Runtime) -> None:
    session = load(rt, [pack("p", "a.md", "b.md")], {"a.md": "abc", "b.md": "d"})
    assert block_ids(rt.resolve(session.session_id, context={"max_context_tokens": 0})) == []
    assert len(payloads(rt, session.session_id, "context.redacted")) == 2


@pytest.mark.parametrize("bad", [-1, "10", 1.5, True, None])
def test_invalid_max_context_tokens_is_refused_and_changes_nothing(rt: cra.Runtime, bad: Any) -> None:
    session = load(rt, [pack("p", "a.md")], {"a.md": "abc"})
    before = snapshot(rt)
    if bad is None:
        rt.resolve(session.session_id, context={"max_context_tokens": None})  # absent means uncapped
        return
    with pytest.raises(InvalidRequestError) as info:
        rt.resolve(session.session_id, context={"max_context_tokens": bad})
    assert info.value.details == {
        "errors": [{"pointer": "/context/max_context_tokens", "message": "integer >= 0"}]
    }
    assert snapshot(rt) == before


def test_context_blocks_from_several_atlases_interleave_by_priority(rt: cra.Runtime) -> None:
    rt.load_atlas(
        manifest(
            "org.example.one", actions=[action("one.read")], context_packs=[pack("p", "a.md", priority=10)]
        ),
        files={"a.md": "one"},
    )
    rt.load_atlas(
        manifest(
            "org.example.two", actions=[action("two.read")], context_packs=[pack("p", "a.md", priority=20)]
        ),
        files={"a.md": "two"},
    )
    session = rt.create_session("agent-1", "goal")
    blocks = rt.resolve(session.session_id).context_blocks
    assert [(b.block_id, b.source, b.content) for b in blocks] == [
        ("p/a.md", "org.example.two", "two"),
        ("p/a.md", "org.example.one", "one"),
    ]


def test_deeply_nested_context_is_refused(rt: cra.Runtime) -> None:
    from .helpers import deep

    session = load(rt, [pack("p", "a.md")], {"a.md": "abc"})
    before = snapshot(rt)
    with pytest.raises(PayloadTooLargeError):
        rt.resolve(session.session_id, context={"x": deep(200)})
    assert snapshot(rt) == before
