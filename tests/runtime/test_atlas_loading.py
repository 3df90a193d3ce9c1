"""Loading Atlases (SPEC 1): directories, merged extra files, validation with JSON pointers, file safety,
digests, immutability, versions, unloading and executors."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

import cra
from cra.errors import AtlasAlreadyLoadedError, AtlasNotFoundError, InvalidAtlasError, UnknownAtlasError

from .helpers import action, manifest, new_runtime, policy, simple_manifest, snapshot, write_atlas


def pack(pack_id: str, *files: str, **fields: Any) -> dict[str, Any]:
    return {"pack_id": pack_id, "name": pack_id, "files": list(files), **fields}


def load_error(runtime: cra.Runtime, source: Any, **kw: Any) -> InvalidAtlasError:
    """Load an invalid Atlas; assert it raised INVALID_ATLAS and changed nothing; return the error."""
    before = snapshot(runtime)
    with pytest.raises(InvalidAtlasError) as info:
        runtime.load_atlas(source, **kw)
    assert info.value.code == "INVALID_ATLAS"
    assert snapshot(runtime) == before
    return info.value


def pointers(error: InvalidAtlasError) -> list[str]:
    assert error.details is not None
    return [p["pointer"] for p in error.details["problems"]]


def problem_at(error: InvalidAtlasError, pointer: str) -> dict[str, Any]:
    assert error.details is not None
    found = [p for p in error.details["problems"] if p["pointer"] == pointer]
    assert found, f"no problem at {pointer}: {error.details['problems']}"
    return found[0]


def doc_atlas(**kw: Any) -> dict[str, Any]:
    return manifest(
        actions=[action("shop.read")],
        policies=[policy("allow-all", "allow")],
        context_packs=[pack("docs", "context/guide.md", "context/data.json")],
        **kw,
    )


# --- directories --------------------------------------------------------------------------------------


def test_directory_atlas_loads_manifest_and_context_files(rt: cra.Runtime, tmp_path: Path) -> None:
    root = write_atlas(
        tmp_path / "shop",
        doc_atlas(),
        {"context/guide.md": "# Guide\nBe kind.", "context/data.json": '{"a": 1}'},
    )
    atlas = rt.load_atlas(root)
    assert (atlas.atlas_id, atlas.version) == ("org.example.shop", "1.0.0")
    assert dict(atlas.files) == {"context/guide.md": "# Guide\nBe kind.", "context/data.json": '{"a": 1}'}
    assert [a.action_id for a in atlas.actions] == ["shop.read"]
    session = rt.create_session("agent-1", "help")
    blocks = rt.resolve(session.session_id).context_blocks
    assert [(b.block_id, b.content, b.content_type) for b in blocks] == [
        ("docs/context/guide.md", "# Guide\nBe kind.", "text/markdown"),
        ("docs/context/data.json", '{"a": 1}', "application/json"),
    ]


def test_directory_atlas_can_be_loaded_from_its_manifest_file(rt: cra.Runtime, tmp_path: Path) -> None:
    root = write_atlas(tmp_path / "shop", doc_atlas(), {"context/guide.md": "g", "context/data.json": "{}"})
    atlas = rt.load_atlas(root / "atlas.json")
    assert atlas.files["context/guide.md"] == "g"


def test_missing_manifest_in_a_directory_is_invalid(rt: cra.Runtime, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    load_error(rt, tmp_path / "empty")


def test_policies_and_actions_directories_are_merged_in_array_and_object_form(
    rt: cra.Runtime, tmp_path: Path
) -> None:
    root = write_atlas(
        tmp_path / "shop",
        manifest(actions=[action("shop.read")], policies=[policy("allow-read", "allow", ["shop.read"])]),
        {
            "actions/a.json": [action("shop.write")],
            "actions/b.json": {"actions": [action("shop.delete")]},
            "policies/1-array.json": [policy("allow-write", "allow", ["shop.write"])],
            "policies/2-object.json": {"policies": [policy("deny-delete", "deny", ["shop.delete"])]},
            "policies/notes.txt": "not JSON, and not *.json: ignored",
        },
    )
    atlas = rt.load_atlas(root)
    assert [a.action_id for a in atlas.actions] == ["shop.read", "shop.write", "shop.delete"]
    assert [p.policy_id for p in atlas.policies] == ["allow-read", "allow-write", "deny-delete"]
    assert [a["action_id"] for a in atlas.manifest["actions"]] == ["shop.read", "shop.write", "shop.delete"]
    session = rt.create_session("agent-1", "help")
    resolution = rt.resolve(session.session_id)
    assert resolution.allowed_ids == ["shop.read", "shop.write"]
    assert [(d.action_id, d.policy_id) for d in resolution.denied_actions] == [("shop.delete", "deny-delete")]


def test_extra_policy_file_of_the_wrong_shape_is_reported_with_its_source(
    rt: cra.Runtime, tmp_path: Path
) -> None:
    root = write_atlas(tmp_path / "shop", simple_manifest("shop.read"), {"policies/bad.json": {"rules": []}})
    error = load_error(rt, root)
    assert any(p.get("source") == "policies/bad.json" for p in error.details["problems"])  # type: ignore[index]


def test_problem_inside_a_merged_policy_file_names_its_pointer_and_source(
    rt: cra.Runtime, tmp_path: Path
) -> None:
    root = write_atlas(
        tmp_path / "shop",
        simple_manifest("shop.read"),
        {"policies/extra.json": [policy("deny-ghost", "deny", ["shop.ghost"])]},
    )
    error = load_error(rt, root)
    problem = problem_at(error, "/policies/1/actions/0")
    assert problem["source"] == "policies/extra.json"
    assert "shop.ghost" in problem["message"]


# --- file safety --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["../x.md", "/etc/passwd", "a/../../x.md", "context/../../x.md"])
def test_context_path_leaving_the_atlas_is_rejected_with_its_pointer(
    rt: cra.Runtime, tmp_path: Path, path: str
) -> None:
    (tmp_path / "x.md").write_text("secret outside the Atlas")
    root = write_atlas(
        tmp_path / "shop",
        manifest(
            actions=[action("shop.read")],
            context_packs=[pack("ok", "context/fine.md"), pack("evil", path)],
        ),
        {"context/fine.md": "fine", "a/placeholder.md": "p"},
    )
    error = load_error(rt, root)
    assert pointers(error) == ["/context_packs/1/files/0"]
    assert problem_at(error, "/context_packs/1/files/0")["stage"] == "file"


def test_symlink_inside_the_atlas_pointing_outside_is_rejected(rt: cra.Runtime, tmp_path: Path) -> None:
    (tmp_path / "secret.md").write_text("outside")
    root = write_atlas(
        tmp_path / "shop",
        manifest(actions=[action("shop.read")], context_packs=[pack("p", "context/link.md")]),
    )
    (root / "context").mkdir()
    os.symlink(tmp_path / "secret.md", root / "context" / "link.md")
    error = load_error(rt, root)
    assert pointers(error) == ["/context_packs/0/files/0"]
    assert "outside" in problem_at(error, "/context_packs/0/files/0")["message"]


def test_symlinked_directory_leaving_the_atlas_is_rejected(rt: cra.Runtime, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "doc.md").write_text("outside")
    root = write_atlas(
        tmp_path / "shop",
        manifest(actions=[action("shop.read")], context_packs=[pack("p", "context/doc.md")]),
    )
    os.symlink(tmp_path / "elsewhere", root / "context")
    assert pointers(load_error(rt, root)) == ["/context_packs/0/files/0"]


def test_symlink_that_stays_inside_the_atlas_is_accepted(rt: cra.Runtime, tmp_path: Path) -> None:
    root = write_atlas(
        tmp_path / "shop",
        manifest(actions=[action("shop.read")], context_packs=[pack("p", "context/link.md")]),
        {"docs/real.md": "inside"},
    )
    (root / "context").mkdir()
    os.symlink(root / "docs" / "real.md", root / "context" / "link.md")
    assert rt.load_atlas(root).files["context/link.md"] == "inside"


def test_missing_context_file_is_reported(rt: cra.Runtime, tmp_path: Path) -> None:
    root = write_atlas(
        tmp_path / "shop", manifest(actions=[action("shop.read")], context_packs=[pack("p", "context/no.md")])
    )
    error = load_error(rt, root)
    assert "does not exist" in problem_at(error, "/context_packs/0/files/0")["message"]


def test_non_utf8_context_file_is_rejected(rt: cra.Runtime, tmp_path: Path) -> None:
    root = write_atlas(
        tmp_path / "shop",
        manifest(actions=[action("shop.read")], context_packs=[pack("p", "context/latin1.md")]),
        {"context/latin1.md": "caf\xe9".encode("latin-1")},
    )
    error = load_error(rt, root)
    assert "UTF-8" in problem_at(error, "/context_packs/0/files/0")["message"]


def test_context_file_over_the_size_limit_is_rejected_and_one_at_the_limit_loads(tmp_path: Path) -> None:
    runtime = new_runtime(max_context_file_bytes=10)
    small = write_atlas(
        tmp_path / "small",
        manifest(actions=[action("shop.read")], context_packs=[pack("p", "context/a.md")]),
        {"context/a.md": "x" * 10},
    )
    big = write_atlas(
        tmp_path / "big",
        manifest("org.example.big", actions=[action("shop.read")], context_packs=[pack("p", "context/a.md")]),
        {"context/a.md": "x" * 11},
    )
    error = load_error(runtime, big)
    assert "limit" in problem_at(error, "/context_packs/0/files/0")["message"]
    assert runtime.load_atlas(small).files["context/a.md"] == "x" * 10


def test_size_limit_counts_bytes_not_characters(tmp_path: Path) -> None:
    runtime = new_runtime(max_context_file_bytes=10)
    root = write_atlas(
        tmp_path / "shop",
        manifest(actions=[action("shop.read")], context_packs=[pack("p", "context/a.md")]),
        {"context/a.md": "é" * 6},  # 6 characters, 12 bytes
    )
    load_error(runtime, root)


# --- manifest problems --------------------------------------------------------------------------------


def test_manifest_that_is_not_json_is_invalid(rt: cra.Runtime, tmp_path: Path) -> None:
    root = write_atlas(tmp_path / "shop", '{"atlas_version": "1.0", ')
    error = load_error(rt, root)
    assert "JSON" in error.details["problems"][0]["message"]  # type: ignore[index]


def test_nan_in_a_manifest_file_is_invalid(rt: cra.Runtime, tmp_path: Path) -> None:
    text = json.dumps(simple_manifest("shop.read", metadata={"ratio": float("nan")}))
    assert "NaN" in text
    load_error(rt, write_atlas(tmp_path / "shop", text))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_infinity_in_a_manifest_dict_is_invalid(rt: cra.Runtime, bad: float) -> None:
    load_error(rt, simple_manifest("shop.read", metadata={"ratio": bad}))


def test_schema_problems_carry_json_pointers(rt: cra.Runtime) -> None:
    bad = simple_manifest("shop.read", atlas_id="Not-An-Id", version="1.0")
    bad["actions"].append({"action_id": "Bad Id", "name": "x", "description": "x"})
    error = load_error(rt, bad)
    assert {"/atlas_id", "/version", "/actions/1/action_id"} <= set(pointers(error))


def test_invalid_parameters_schema_is_reported_at_its_action(rt: cra.Runtime) -> None:
    bad = manifest(
        actions=[action("shop.read"), action("shop.write", parameters_schema={"type": "bogus"})],
        policies=[policy("allow-all", "allow")],
    )
    error = load_error(rt, bad)
    assert pointers(error) == ["/actions/1/parameters_schema"]
    assert problem_at(error, "/actions/1/parameters_schema")["stage"] == "semantic"


def test_capability_naming_an_unknown_action_is_an_error(rt: cra.Runtime) -> None:
    bad = manifest(
        actions=[action("shop.read")],
        capabilities=[{"capability_id": "shop", "name": "Shop", "actions": ["shop.read", "shop.ghost"]}],
    )
    assert pointers(load_error(rt, bad)) == ["/capabilities/0/actions/1"]


def test_policy_naming_an_unknown_action_literally_is_an_error(rt: cra.Runtime) -> None:
    bad = manifest(
        actions=[action("shop.read")], policies=[policy("p", "allow", ["shop.read", "shop.ghost"])]
    )
    assert pointers(load_error(rt, bad)) == ["/policies/0/actions/1"]


def test_policy_glob_matching_nothing_is_only_a_warning(rt: cra.Runtime) -> None:
    atlas = rt.load_atlas(
        manifest(actions=[action("shop.read")], policies=[policy("p", "allow", ["shop.read", "billing.*"])])
    )
    assert any("billing.*" in w for w in atlas.warnings)
    report = cra.validate_atlas(
        manifest(actions=[action("shop.read")], policies=[policy("p", "allow", ["billing.*"])])
    )
    assert report.valid and report.problems == []
    assert any("/policies/0/actions/0" in w for w in report.warnings)


@pytest.mark.parametrize(
    ("params", "pointer"),
    [
        (None, "/policies/0/parameters"),
        ({"period_seconds": 60}, "/policies/0/parameters/max_cost"),
        ({"max_cost": -1}, "/policies/0/parameters/max_cost"),
        ({"max_cost": 5, "period_seconds": 0}, "/policies/0/parameters/period_seconds"),
        ({"max_cost": 5, "costs": {"shop.*": "cheap"}}, "/policies/0/parameters/costs/shop.*"),
        ({"max_cost": 5, "scope": "planet"}, "/policies/0/parameters/scope"),
    ],
)
def test_budget_policy_without_valid_parameters_is_an_error(
    rt: cra.Runtime, params: dict[str, Any] | None, pointer: str
) -> None:
    fields = {} if params is None else {"parameters": params}
    bad = manifest(actions=[action("shop.read")], policies=[policy("b", "budget", ["shop.*"], **fields)])
    assert pointers(load_error(rt, bad)) == [pointer]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (None, ["/policies/0/parameters"]),
        ({}, ["/policies/0/parameters/max_calls", "/policies/0/parameters/window_seconds"]),
        ({"max_calls": 0, "window_seconds": 60}, ["/policies/0/parameters/max_calls"]),
        ({"max_calls": 2}, ["/policies/0/parameters/window_seconds"]),
    ],
)
def test_rate_limit_policy_without_valid_parameters_is_an_error(
    rt: cra.Runtime, params: dict[str, Any] | None, expected: list[str]
) -> None:
    fields = {} if params is None else {"parameters": params}
    bad = manifest(actions=[action("shop.read")], policies=[policy("r", "rate_limit", ["shop.*"], **fields)])
    assert pointers(load_error(rt, bad)) == expected


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd", "", "America/New York"])
def test_time_window_with_an_unknown_timezone_is_an_error(rt: cra.Runtime, zone: str) -> None:
    window = {"start": "09:00", "end": "17:00", "timezone": zone}
    bad = manifest(
        actions=[action("shop.read")],
        policies=[policy("p", "allow", conditions={"time_window": window})],
    )
    assert pointers(load_error(rt, bad)) == ["/policies/0/conditions/time_window/timezone"]


def test_time_window_with_a_malformed_time_is_an_error(rt: cra.Runtime) -> None:
    window = {"start": "9am", "end": "24:00", "timezone": "UTC"}
    bad = manifest(
        actions=[action("shop.read")],
        policies=[policy("p", "allow", conditions={"time_window": window})],
    )
    assert {"/policies/0/conditions/time_window/start", "/policies/0/conditions/time_window/end"} <= set(
        pointers(load_error(rt, bad))
    )


def test_every_problem_is_reported_at_once(rt: cra.Runtime, tmp_path: Path) -> None:
    (tmp_path / "outside.md").write_text("x")
    bad = manifest(
        version="one",
        actions=[
            action("shop.read"),
            action("shop.read"),
            action("shop.write", parameters_schema={"type": "bogus"}),
        ],
        capabilities=[{"capability_id": "shop", "name": "Shop", "actions": ["shop.ghost"]}],
        policies=[
            policy("p1", "deny", ["shop.phantom"]),
            policy("p1", "budget", ["shop.*"], parameters={}),
            policy(
                "p3",
                "allow",
                conditions={"time_window": {"start": "09:00", "end": "17:00", "timezone": "Nowhere/City"}},
            ),
        ],
        context_packs=[pack("docs", "context/missing.md", "../outside.md")],
    )
    root = write_atlas(tmp_path / "shop", bad)
    error = load_error(rt, root)
    assert set(pointers(error)) >= {
        "/version",
        "/actions/1/action_id",
        "/actions/2/parameters_schema",
        "/capabilities/0/actions/0",
        "/policies/0/actions/0",
        "/policies/1/policy_id",
        "/policies/1/parameters/max_cost",
        "/policies/2/conditions/time_window/timezone",
        "/context_packs/0/files/0",
        "/context_packs/0/files/1",
    }
    stages = {p["stage"] for p in error.details["problems"]}  # type: ignore[index]
    assert stages == {"schema", "semantic", "file"}


def test_validate_atlas_reports_the_same_problems_without_loading(rt: cra.Runtime, tmp_path: Path) -> None:
    bad = manifest(actions=[action("shop.read")], policies=[policy("p", "allow", ["shop.ghost"])])
    report = cra.validate_atlas(bad)
    assert not report.valid
    assert report.error_paths == ["/policies/0/actions/0"]
    assert rt.atlases() == []


# --- digest and immutability --------------------------------------------------------------------------


def test_digest_is_stable_for_the_same_content(tmp_path: Path) -> None:
    files = {"context/guide.md": "guide", "context/data.json": "{}"}
    first = write_atlas(tmp_path / "one", doc_atlas(), files)
    second = write_atlas(tmp_path / "two", doc_atlas(), files)
    a = new_runtime().load_atlas(first)
    b = new_runtime().load_atlas(second)
    c = new_runtime().load_atlas(doc_atlas(), files=files)
    assert len(a.digest) == 64 and int(a.digest, 16) >= 0
    assert a.digest == b.digest == c.digest


def test_digest_ignores_manifest_formatting_and_key_order(tmp_path: Path) -> None:
    files = {"context/guide.md": "guide", "context/data.json": "{}"}
    pretty = write_atlas(tmp_path / "pretty", doc_atlas(), files)
    reordered = dict(reversed(list(doc_atlas().items())))
    compact = write_atlas(tmp_path / "compact", json.dumps(reordered, separators=(",", ":")), files)
    assert new_runtime().load_atlas(pretty).digest == new_runtime().load_atlas(compact).digest


def test_digest_changes_when_a_context_file_changes(tmp_path: Path) -> None:
    root = write_atlas(
        tmp_path / "shop", doc_atlas(), {"context/guide.md": "guide", "context/data.json": "{}"}
    )
    before = new_runtime().load_atlas(root).digest
    (root / "context" / "guide.md").write_text("guide, edited")
    assert new_runtime().load_atlas(root).digest != before


def test_digest_changes_when_the_manifest_changes(tmp_path: Path) -> None:
    a = new_runtime().load_atlas(simple_manifest("shop.read"))
    b = new_runtime().load_atlas(simple_manifest("shop.read", description="other"))
    assert a.digest != b.digest


def test_session_trace_records_the_digest_of_each_atlas(rt: cra.Runtime) -> None:
    atlas = rt.load_atlas(simple_manifest("shop.read"))
    session = rt.create_session("agent-1", "help")
    started = rt.get_trace(session.session_id)[0]
    assert started.event_type == "session.started"
    assert started.payload["atlases"] == [
        {"atlas_id": "org.example.shop", "version": "1.0.0", "digest": atlas.digest}
    ]
    assert session.atlases == [{"atlas_id": "org.example.shop", "version": "1.0.0", "digest": atlas.digest}]


def test_atlas_manifest_property_returns_a_copy(rt: cra.Runtime) -> None:
    atlas = rt.load_atlas(simple_manifest("shop.read"))
    copy = atlas.manifest
    copy["actions"].append(action("shop.hack"))
    copy["policies"].clear()
    copy["atlas_id"] = "org.example.other"
    assert atlas.manifest == simple_manifest("shop.read")
    session = rt.create_session("agent-1", "help")
    assert rt.resolve(session.session_id).allowed_ids == ["shop.read"]


def test_atlas_objects_cannot_be_edited(rt: cra.Runtime) -> None:
    atlas = rt.load_atlas(
        manifest(
            actions=[action("shop.read", parameters_schema={"type": "object"})],
            policies=[policy("allow-all", "allow")],
            context_packs=[pack("p", "context/a.md")],
        ),
        files={"context/a.md": "text"},
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        atlas.version = "9.9.9"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        atlas.actions[0].risk_tier = "critical"  # type: ignore[misc]
    with pytest.raises(TypeError):
        atlas.files["context/a.md"] = "edited"  # type: ignore[index]
    with pytest.raises(TypeError):
        atlas.actions[0].parameters_schema["type"] = "string"  # type: ignore[index]
    with pytest.raises(AttributeError):
        atlas.actions.append(None)  # type: ignore[attr-defined]


def test_editing_the_source_after_loading_changes_nothing(rt: cra.Runtime, tmp_path: Path) -> None:
    source = manifest(
        actions=[action("shop.read")],
        policies=[policy("allow-all", "allow")],
        context_packs=[pack("p", "context/a.md")],
    )
    files = {"context/a.md": "original"}
    atlas = rt.load_atlas(source, files=files)
    digest = atlas.digest
    source["policies"][0]["type"] = "deny"
    source["actions"].append(action("shop.hack"))
    files["context/a.md"] = "edited"
    session = rt.create_session("agent-1", "help")
    resolution = rt.resolve(session.session_id)
    assert resolution.allowed_ids == ["shop.read"]
    assert [b.content for b in resolution.context_blocks] == ["original"]
    assert rt.get_atlas("org.example.shop").digest == digest


def test_editing_context_files_on_disk_after_loading_changes_nothing(rt: cra.Runtime, tmp_path: Path) -> None:
    root = write_atlas(tmp_path / "shop", doc_atlas(), {"context/guide.md": "v1", "context/data.json": "{}"})
    rt.load_atlas(root)
    (root / "context" / "guide.md").write_text("v2")
    shutil.rmtree(root / "context")
    session = rt.create_session("agent-1", "help")
    assert rt.resolve(session.session_id).context_blocks[0].content == "v1"


# --- versions and unloading ---------------------------------------------------------------------------


def test_loading_the_same_id_and_version_twice_is_a_conflict(rt: cra.Runtime) -> None:
    first = rt.load_atlas(simple_manifest("shop.read"))
    before = snapshot(rt)
    with pytest.raises(AtlasAlreadyLoadedError) as info:
        rt.load_atlas(simple_manifest("shop.read", "shop.write"))
    assert info.value.code == "ATLAS_ALREADY_LOADED"
    assert info.value.details is not None and info.value.details["digest"] == first.digest
    assert snapshot(rt) == before
    assert rt.get_atlas("org.example.shop") is first


def test_a_new_version_serves_new_sessions_while_old_sessions_keep_the_old_one(rt: cra.Runtime) -> None:
    v1 = rt.load_atlas(simple_manifest("shop.read"))
    old = rt.create_session("agent-1", "help")
    v2 = rt.load_atlas(
        manifest(
            version="2.0.0",
            actions=[action("shop.read"), action("shop.write")],
            policies=[
                policy("deny-read", "deny", ["shop.read"]),
                policy("allow-write", "allow", ["shop.write"]),
            ],
        )
    )
    new = rt.create_session("agent-1", "help")
    assert [a.version for a in rt.atlases()] == ["2.0.0"]
    assert old.atlases[0]["digest"] == v1.digest and new.atlases[0]["digest"] == v2.digest

    old_resolution = rt.resolve(old.session_id)
    assert old_resolution.allowed_ids == ["shop.read"] and old_resolution.denied_ids == []
    new_resolution = rt.resolve(new.session_id)
    assert new_resolution.allowed_ids == ["shop.write"] and new_resolution.denied_ids == ["shop.read"]

    assert rt.execute(old.session_id, old_resolution.resolution_id, "shop.read").status == "authorized"
    denied = rt.execute(new.session_id, new_resolution.resolution_id, "shop.read")
    assert denied.error_code == "ACTION_NOT_ALLOWED"


def test_loading_an_older_version_also_replaces_for_new_sessions(rt: cra.Runtime) -> None:
    rt.load_atlas(simple_manifest("shop.read", version="2.0.0"))
    rt.load_atlas(simple_manifest("shop.read", version="1.0.0"))
    assert rt.get_atlas("org.example.shop").version == "1.0.0"


def test_unload_atlas_hides_it_from_new_sessions_only(rt: cra.Runtime) -> None:
    atlas = rt.load_atlas(simple_manifest("shop.read"))
    rt.load_atlas(simple_manifest("crm.read", atlas_id="org.example.crm"))
    old = rt.create_session("agent-1", "help")
    assert rt.unload_atlas("org.example.shop") is atlas
    assert [a.atlas_id for a in rt.atlases()] == ["org.example.crm"]
    with pytest.raises(AtlasNotFoundError):
        rt.get_atlas("org.example.shop")
    new = rt.create_session("agent-1", "help")
    assert new.atlas_ids == ["org.example.crm"]
    assert rt.resolve(new.session_id).allowed_ids == ["crm.read"]
    assert rt.resolve(old.session_id).allowed_ids == ["shop.read", "crm.read"]
    before = snapshot(rt)
    with pytest.raises(UnknownAtlasError):
        rt.create_session("agent-1", "help", atlas_ids=["org.example.shop"])
    with pytest.raises(AtlasNotFoundError) as info:
        rt.unload_atlas("org.example.shop")
    assert info.value.code == "ATLAS_NOT_FOUND"
    assert snapshot(rt) == before


def test_an_unloaded_atlas_can_be_loaded_again(rt: cra.Runtime) -> None:
    rt.load_atlas(simple_manifest("shop.read"))
    rt.unload_atlas("org.example.shop")
    assert rt.load_atlas(simple_manifest("shop.read")).version == "1.0.0"


def test_atlases_are_listed_in_load_order(rt: cra.Runtime) -> None:
    rt.load_atlas(simple_manifest("b.read", atlas_id="org.example.bbb"))
    rt.load_atlas(simple_manifest("a.read", atlas_id="org.example.aaa"))
    assert [a.atlas_id for a in rt.atlases()] == ["org.example.bbb", "org.example.aaa"]


# --- executors ----------------------------------------------------------------------------------------


def test_executor_named_in_the_atlas_is_imported_and_runs_as_the_handler(rt: cra.Runtime) -> None:
    cra_test_executors = importlib.import_module("cra_test_executors")  # the module the loader imports
    cra_test_executors.CALLS.clear()
    rt.load_atlas(
        manifest(
            actions=[
                action("shop.echo", executor="cra_test_executors:echo"),
                action("shop.shout", executor="cra_test_executors:Tools.shout"),
                action("shop.remote", executor="https://example.invalid/run"),
            ],
            policies=[policy("allow-all", "allow")],
        )
    )
    session = rt.create_session("agent-1", "help")
    resolution = rt.resolve(session.session_id)
    echoed = rt.execute(session.session_id, resolution.resolution_id, "shop.echo", {"n": 1})
    assert (echoed.status, echoed.result) == ("success", {"echo": {"n": 1}})
    assert cra_test_executors.CALLS == [{"n": 1}]
    shouted = rt.execute(session.session_id, resolution.resolution_id, "shop.shout", {"text": "hi"})
    assert shouted.result == "HI"
    # An executor that is not a Python reference leaves the run to the caller.
    assert rt.execute(session.session_id, resolution.resolution_id, "shop.remote").status == "authorized"


def test_a_registered_handler_takes_precedence_over_the_executor(rt: cra.Runtime) -> None:
    rt.load_atlas(
        manifest(
            actions=[action("shop.echo", executor="cra_test_executors:echo")],
            policies=[policy("allow-all", "allow")],
        )
    )
    rt.register("shop.echo", lambda params: "registered")
    session = rt.create_session("agent-1", "help")
    resolution = rt.resolve(session.session_id)
    assert rt.execute(session.session_id, resolution.resolution_id, "shop.echo").result == "registered"


def test_sessions_keep_the_executor_of_their_atlas_version(rt: cra.Runtime) -> None:
    def versioned(version: str, executor: str) -> dict[str, Any]:
        return manifest(
            version=version,
            actions=[action("shop.run", executor=f"cra_test_executors:{executor}")],
            policies=[policy("allow-all", "allow")],
        )

    rt.load_atlas(versioned("1.0.0", "version_one"))
    old = rt.create_session("agent-1", "help")
    rt.load_atlas(versioned("2.0.0", "version_two"))
    new = rt.create_session("agent-1", "help")
    old_res, new_res = rt.resolve(old.session_id), rt.resolve(new.session_id)
    assert rt.execute(old.session_id, old_res.resolution_id, "shop.run").result == "v1"
    assert rt.execute(new.session_id, new_res.resolution_id, "shop.run").result == "v2"


@pytest.mark.parametrize(
    "executor",
    ["cra_test_no_such_module:run", "cra_test_executors:no_such_function", "cra_test_executors:NOT_CALLABLE"],
)
def test_executor_that_cannot_be_imported_makes_the_atlas_invalid(rt: cra.Runtime, executor: str) -> None:
    bad = manifest(
        actions=[action("shop.read"), action("shop.run", executor=executor)],
        policies=[policy("allow-all", "allow")],
    )
    error = load_error(rt, bad)
    assert pointers(error) == ["/actions/1/executor"]
    assert rt.atlases() == []


def test_an_atlas_rebuilt_by_digest_after_a_restart_imports_its_executors(tmp_path: Path) -> None:
    # Session started under v1 (executor version_one); v2 replaces it; a new process that only loads v2 must
    # still run v1's executor for the old session, whose Atlas comes back from the state store by digest.
    url = f"sqlite:///{tmp_path}/cra.db"

    def versioned(version: str, executor: str) -> dict[str, Any]:
        m = simple_manifest("shop.read")
        m["version"] = version
        m["actions"][0]["executor"] = f"cra_test_executors:{executor}"
        return m

    first = cra.Runtime(clock=cra.ManualClock(), storage=url)
    first.load_atlas(versioned("1.0.0", "version_one"))
    sid = first.create_session("agent-1", "Old version").session_id
    rid = first.resolve(sid).resolution_id
    first.close()
    second = cra.Runtime(clock=cra.ManualClock(), storage=url)
    second.load_atlas(versioned("2.0.0", "version_two"))
    response = second.execute(sid, rid, "shop.read", {})
    assert (response.status, response.result) == ("success", "v1")
    second.close()
