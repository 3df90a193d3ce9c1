"""``/v1/atlases``: list and read loaded Atlases; load and unload them (admin)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...atlas import Atlas
from ...errors import InvalidRequestError
from .._endpoint import Api, read_object
from ..auth import Principal
from ..responses import json_response

__all__ = ["get_atlas", "list_atlases", "load_atlas", "manifest_and_files", "unload_atlas"]


def atlas_body(atlas: Atlas, *, full: bool = False) -> dict[str, Any]:
    """An Atlas on the wire: its summary, and with ``full`` its manifest, file names and warnings."""
    body = atlas.summary()
    if full:
        body["manifest"] = atlas.manifest
        body["files"] = sorted(atlas.files)
        body["warnings"] = list(atlas.warnings)
    return body


def manifest_and_files(value: dict[str, Any], what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """An Atlas sent over the wire: ``{manifest, files?}`` (null files means none) or a bare manifest. Each
    part must be an object (``what`` names them in the error); the loader checks the rest."""
    if "manifest" in value:
        manifest, files = value["manifest"], value.get("files")
        files = {} if files is None else files
    else:
        manifest, files = value, {}
    if not isinstance(manifest, dict) or not isinstance(files, dict):
        raise InvalidRequestError(f"{what} must be objects")
    return manifest, files


async def list_atlases(api: Api, request: Request, principal: Principal) -> Response:
    """The loaded Atlases (the versions new sessions get)."""
    return json_response({"atlases": [atlas_body(a) for a in api.runtime.atlases()]})


async def get_atlas(api: Api, request: Request, principal: Principal) -> Response:
    """One loaded Atlas with its manifest (404 ``ATLAS_NOT_FOUND``)."""
    return json_response(atlas_body(api.runtime.get_atlas(request.path_params["atlas_id"]), full=True))


async def load_atlas(api: Api, request: Request, principal: Principal) -> Response:
    """Load an Atlas (admin): ``{manifest, files?}`` or a bare manifest -> 201 summary; 400
    ``INVALID_ATLAS`` listing every problem; 409 ``ATLAS_ALREADY_LOADED`` for a loaded id and version."""
    body = await read_object(request, api)
    if "manifest" in body and set(body) - {"manifest", "files"}:
        raise InvalidRequestError("the body is {manifest, files?} or a bare manifest")
    manifest, files = manifest_and_files(body, "manifest and files")
    atlas = await api.call(api.runtime.load_atlas, manifest, files=files)
    return json_response(atlas_body(atlas), 201, {"Location": f"/v1/atlases/{atlas.atlas_id}"})


async def unload_atlas(api: Api, request: Request, principal: Principal) -> Response:
    """Stop offering an Atlas to new sessions (admin) -> 204; sessions that use it keep it."""
    await api.call(api.runtime.unload_atlas, request.path_params["atlas_id"])
    return Response(status_code=204)
