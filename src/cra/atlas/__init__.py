"""Atlases: versioned packages of context, actions and policies (SPEC 1)."""

from .loader import DEFAULT_MAX_FILE_BYTES, load_atlas, validate_atlas
from .model import Action, Atlas, Capability, ContextPack, Policy, RateLimitSpec
from .validate import AtlasReport, Problem

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "Action",
    "Atlas",
    "AtlasReport",
    "Capability",
    "ContextPack",
    "Policy",
    "Problem",
    "RateLimitSpec",
    "load_atlas",
    "validate_atlas",
]
