"""Loading, replacing and unloading Atlases, and registering handlers."""

from __future__ import annotations

from collections.abc import Mapping

from ._runtime_base import _ACTION_ID, Handler, RuntimeBase
from .atlas import Atlas, load_atlas
from .atlas.loader import AtlasSource
from .errors import (
    AtlasAlreadyLoadedError,
    AtlasNotFoundError,
    InvalidRequestError,
)
from .policy.engine import compile_atlas


class AtlasOps(RuntimeBase):
    """Loading, replacing and unloading Atlases, and registering handlers."""

    # --- atlases ------------------------------------------------------------------------------------------

    def load_atlas(self, source: AtlasSource | Atlas, *, files: Mapping[str, str] | None = None) -> Atlas:
        """Load an Atlas (a directory, a manifest file, a manifest dict with ``files``, or an ``Atlas``).

        Loading another version of a loaded ``atlas_id`` replaces it for sessions created from now on;
        existing sessions keep the version they started with. The same id and version again raises
        ``AtlasAlreadyLoadedError``; an invalid Atlas raises ``InvalidAtlasError`` and changes nothing.
        """
        self._open()
        atlas = (
            source
            if isinstance(source, Atlas)
            else load_atlas(source, files=files, max_file_bytes=self.max_context_file_bytes)
        )
        executors = self._import_executors(atlas)
        compiled = self._compiled_by_digest.get(atlas.digest) or compile_atlas(atlas)
        with self._atlas_lock:
            current = self._atlases.get(atlas.atlas_id)
            if current is not None and current.atlas.version == atlas.version:
                raise AtlasAlreadyLoadedError(
                    f"Atlas {atlas.atlas_id} {atlas.version} is already loaded",
                    details={
                        "atlas_id": atlas.atlas_id,
                        "version": atlas.version,
                        "digest": current.atlas.digest,
                    },
                )
            self._executors.update(executors)
            # Replace the whole mapping: sessions being created concurrently see the old or the new one.
            atlases = dict(self._atlases)
            atlases[atlas.atlas_id] = compiled
            self._compiled_by_digest[atlas.digest] = compiled
            self._state_store.save_atlas(atlas)
            self._atlases = atlases
        return atlas

    def unload_atlas(self, atlas_id: str) -> Atlas:
        """Stop offering an Atlas to new sessions (existing sessions keep it)."""
        self._open()
        with self._atlas_lock:
            atlases = dict(self._atlases)
            compiled = atlases.pop(atlas_id, None)
            if compiled is None:
                raise AtlasNotFoundError(f"no Atlas {atlas_id!r} is loaded")
            self._atlases = atlases
        return compiled.atlas

    def atlases(self) -> list[Atlas]:
        """The loaded Atlases, in load order."""
        return [c.atlas for c in self._atlases.values()]

    def get_atlas(self, atlas_id: str) -> Atlas:
        """The loaded Atlas with this id (``AtlasNotFoundError`` otherwise)."""
        compiled = self._atlases.get(atlas_id)
        if compiled is None:
            raise AtlasNotFoundError(f"no Atlas {atlas_id!r} is loaded")
        return compiled.atlas

    # --- handlers -----------------------------------------------------------------------------------------

    def register(self, action_id: str, fn: Handler) -> None:
        """Run ``fn(parameters)`` when ``action_id`` is executed and authorised. Its return value (a JSON
        value) is the ``result``; an exception makes the response ``error`` with code ``HANDLER_ERROR``."""
        if not isinstance(action_id, str) or not _ACTION_ID.match(action_id):
            raise InvalidRequestError(f"not an action id: {action_id!r}")
        if not callable(fn):
            raise InvalidRequestError("a handler must be callable")
        self._handlers[action_id] = fn

    def unregister(self, action_id: str) -> None:
        """Remove a registered handler (executions are then ``authorized`` for the caller to run)."""
        self._handlers.pop(action_id, None)
