"""Loading an Atlas from a directory, a manifest file, or a manifest dict (SPEC 1).

An Atlas is validated whole before anything is built from it: a load either returns a complete, immutable
``Atlas`` or raises ``InvalidAtlasError`` listing every problem. Context files must stay inside the Atlas
directory: absolute paths, ``..`` segments and symlinks that leave it are refused.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from .._jsonvalue import check_json_value
from ..errors import CRAError, InvalidAtlasError
from ..trace.canonical import canonical_json
from .model import Atlas, build_atlas
from .validate import AtlasReport, Problem, check_manifest

__all__ = ["DEFAULT_MAX_FILE_BYTES", "AtlasSource", "load_atlas", "validate_atlas"]

DEFAULT_MAX_FILE_BYTES = 1024 * 1024
"""The largest context file accepted (SPEC 1: 1 MiB by default)."""
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MANIFEST_NAME = "atlas.json"

AtlasSource = str | os.PathLike[str] | Mapping[str, Any]


class _Files:
    """Where context files come from: a directory on disk, or an in-memory mapping of path to text."""

    def __init__(self, root: Path | None, mapping: Mapping[str, str] | None, max_bytes: int) -> None:
        self.root = root.resolve() if root is not None else None
        self.mapping = mapping
        self.max_bytes = max_bytes
        self.loaded: dict[str, str] = {}

    def check(self, path: str) -> str | None:
        if not path or path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
            return f"context file {path!r} must be a relative path inside the Atlas"
        parts = path.replace("\\", "/").split("/")
        if ".." in parts:
            return f"context file {path!r} leaves the Atlas directory"
        if self.mapping is not None:
            if path not in self.mapping:
                return f"context file {path!r} does not exist"
            text = self.mapping[path]
            if not isinstance(text, str):
                return f"context file {path!r} is not text"
            size = len(text.encode("utf-8", "surrogatepass"))
            if size > self.max_bytes:
                return f"context file {path!r} is {size} bytes, over the {self.max_bytes}-byte limit"
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return f"context file {path!r} is not valid UTF-8"
            self.loaded[path] = text
            return None
        if self.root is None:
            return f"context file {path!r} cannot be read: the Atlas has no directory"
        candidate = self.root / path
        try:
            real = candidate.resolve(strict=True)
        except (FileNotFoundError, RuntimeError, OSError):
            return f"context file {path!r} does not exist"
        if real != self.root and self.root not in real.parents:
            return f"context file {path!r} resolves outside the Atlas directory"
        if not real.is_file():
            return f"context file {path!r} is not a regular file"
        size = real.stat().st_size
        if size > self.max_bytes:
            return f"context file {path!r} is {size} bytes, over the {self.max_bytes}-byte limit"
        try:
            self.loaded[path] = real.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            return f"context file {path!r} is not valid UTF-8"
        except OSError as exc:
            return f"context file {path!r} cannot be read: {type(exc).__name__}"
        return None


def _read_json(path: Path, what: str) -> tuple[Any, Problem | None]:
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            return None, Problem(
                "",
                f"{what} is {size} bytes, over the {MAX_MANIFEST_BYTES}-byte limit",
                "schema",
                str(path.name),
            )
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None, Problem("", f"{what} not found: {path.name}", "file", str(path.name))
    except OSError as exc:  # a directory where a file should be, no permission, ...
        return None, Problem("", f"{what} cannot be read: {type(exc).__name__}", "file", str(path.name))
    except orjson.JSONDecodeError as exc:
        return None, Problem("", f"{what} is not valid JSON: {exc}", "schema", str(path.name))
    try:
        check_json_value(data, "")
    except CRAError as exc:
        return None, Problem("", f"{what}: {exc.message}", "schema", str(path.name))
    return data, None


def _merge_extras(root: Path, manifest: dict[str, Any], sources: dict[str, str]) -> list[Problem]:
    """Append ``policies/*.json`` and ``actions/*.json`` (arrays, or ``{"policies": [...]}``) in name order."""
    problems: list[Problem] = []
    for key in ("policies", "actions"):
        folder = root / key
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            rel = f"{key}/{path.name}"
            data, problem = _read_json(path, rel)
            if problem is not None:
                problems.append(Problem("", problem.message, problem.stage, rel))
                continue
            items = data.get(key) if isinstance(data, dict) else data
            if not isinstance(items, list):
                problems.append(
                    Problem("", f'{rel} must hold a JSON array or {{"{key}": [...]}}', "schema", rel)
                )
                continue
            existing = manifest.setdefault(key, [])
            if not isinstance(existing, list):
                continue
            for item in items:
                sources[f"/{key}/{len(existing)}"] = rel
                existing.append(item)
    return problems


def _prepare(
    source: AtlasSource, files: Mapping[str, str] | None, max_file_bytes: int
) -> tuple[Any, _Files, dict[str, str], list[Problem], str | None]:
    sources: dict[str, str] = {}
    if isinstance(source, Mapping):
        try:
            check_json_value(source, "")  # before copying: orjson would quietly turn NaN into null
        except CRAError as exc:
            return (
                None,
                _Files(None, files, max_file_bytes),
                sources,
                [Problem("", exc.message, "schema")],
                None,
            )
        # A plain copy of a checked JSON value: the caller's dict is never touched, tuples become lists.
        return _copy(source), _Files(None, files or {}, max_file_bytes), sources, [], None
    if not isinstance(source, str | os.PathLike):
        problem = Problem("", "an Atlas is a directory, a manifest file, or a manifest object", "schema")
        return None, _Files(None, files, max_file_bytes), sources, [problem], None
    path = Path(source)
    root = path if path.is_dir() else path.parent
    manifest_path = path / MANIFEST_NAME if path.is_dir() else path
    manifest, problem = _read_json(manifest_path, MANIFEST_NAME if path.is_dir() else path.name)
    problems = [problem] if problem else []
    if isinstance(manifest, dict) and path.is_dir():
        problems += _merge_extras(root, manifest, sources)
    return manifest, _Files(root, files, max_file_bytes), sources, problems, str(path)


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


def _file_map_problems(files: Any) -> list[Problem]:
    """Every entry of an in-memory file map that is not ``path -> text`` (used by the manifest or not)."""
    if files is None:
        return []
    if not isinstance(files, Mapping):
        return [Problem("/files", "files must map paths to text", "files")]
    return [
        Problem(
            f"/files/{str(path).replace('~', '~0').replace('/', '~1')}",
            "a file's content must be text",
            "files",
        )
        for path, text in files.items()
        if not isinstance(path, str) or not isinstance(text, str)
    ]


def _digest(manifest: dict[str, Any], files: Mapping[str, str]) -> str:
    return hashlib.sha256(canonical_json({"manifest": manifest, "files": dict(files)})).hexdigest()


def validate_atlas(
    source: AtlasSource,
    *,
    files: Mapping[str, str] | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> AtlasReport:
    """Validate an Atlas without loading it: every problem with its JSON pointer, plus warnings."""
    report, _atlas = _validate(source, files, max_file_bytes)
    return report


def _validate(
    source: AtlasSource, files: Mapping[str, str] | None, max_file_bytes: int
) -> tuple[AtlasReport, Atlas | None]:
    bad_files = _file_map_problems(files)
    if bad_files:  # a file map that is not path -> text could not be read consistently: refuse it whole
        files = None
    manifest, file_source, sources, problems, origin = _prepare(source, files, max_file_bytes)
    problems = bad_files + problems
    warnings: list[str] = []
    if manifest is not None:
        found, warnings = check_manifest(manifest, file_source.check, sources)
        problems += found
    atlas_id = manifest.get("atlas_id") if isinstance(manifest, dict) else None
    version = manifest.get("version") if isinstance(manifest, dict) else None
    atlas_id = atlas_id if isinstance(atlas_id, str) else None
    version = version if isinstance(version, str) else None
    if problems:
        return AtlasReport(False, problems, warnings, atlas_id, version), None
    assert isinstance(manifest, dict)
    used = {p: file_source.loaded[p] for p in sorted(file_source.loaded)}
    digest = _digest(manifest, used)
    atlas = build_atlas(manifest, used, digest, warnings, origin)
    return AtlasReport(True, [], warnings, atlas_id, version, digest), atlas


def load_atlas(
    source: AtlasSource,
    *,
    files: Mapping[str, str] | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> Atlas:
    """Load and validate an Atlas: a directory holding ``atlas.json``, a manifest file, or a manifest dict
    (with its context files given as ``files={"context/a.md": "..."}``).

    Raises ``InvalidAtlasError`` whose ``details["problems"]`` lists every problem with its JSON pointer.
    """
    report, atlas = _validate(source, files, max_file_bytes)
    if atlas is None:
        count = len(report.problems)
        first = report.problems[0]
        raise InvalidAtlasError(
            f"Atlas is invalid ({count} problem{'s' if count != 1 else ''}; first: "
            f"{first.pointer or '/'}: {first.message})",
            details={"problems": [p.to_dict() for p in report.problems], "warnings": report.warnings},
        )
    return atlas
