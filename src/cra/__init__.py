"""CRA: a governance runtime for AI agents.

Agents ask CRA what they may do; CRA answers from versioned Atlases (context, actions, policies), checks and
records every execution, and keeps a tamper-evident, SHA-256 hash-chained TRACE per session::

    import cra

    runtime = cra.Runtime()
    runtime.load_atlas("my-atlas/")
    session = runtime.create_session("agent-1", "Answer a support ticket")
    resolution = runtime.resolve(session.session_id)
    response = runtime.execute(session.session_id, resolution.resolution_id, "ticket.read", {"id": "T-1"})
    assert runtime.verify(session.session_id).valid

The core imports no server, CLI or MCP code; those layers build on it.
"""

from ._ids import SequentialIds
from ._requests import ValidationReport
from ._version import __version__
from .atlas import Atlas, AtlasReport, load_atlas, validate_atlas
from .clock import Clock, ManualClock, SystemClock, format_timestamp, parse_timestamp
from .errors import (
    AuthError,
    ConflictError,
    CRAError,
    ExpiredError,
    InternalError,
    NotFoundError,
    PolicyError,
    RateLimitError,
    UnavailableError,
    ValidationError,
)
from .execution import ExecuteResponse
from .replay import ReconstructedState, ReplayReport, reconstruct_state, replay
from .resolution import AllowedAction, ContextBlock, DeniedAction, Resolution
from .runtime import Handler, Runtime
from .session import Approval, Session
from .trace.canonical import canonical_json
from .trace.diff import Difference, TraceDiff, diff_traces
from .trace.event import TraceEvent, event_hash
from .trace.storage import TraceStorage, open_storage, read_jsonl, write_jsonl
from .trace.verify import ChainVerification, verify_chain

__all__ = [
    "__version__",
    "AllowedAction",
    "Approval",
    "Atlas",
    "AtlasReport",
    "AuthError",
    "canonical_json",
    "ChainVerification",
    "Clock",
    "ConflictError",
    "ContextBlock",
    "CRAError",
    "DeniedAction",
    "diff_traces",
    "Difference",
    "event_hash",
    "ExecuteResponse",
    "ExpiredError",
    "format_timestamp",
    "Handler",
    "InternalError",
    "load_atlas",
    "ManualClock",
    "NotFoundError",
    "open_storage",
    "parse_timestamp",
    "PolicyError",
    "RateLimitError",
    "read_jsonl",
    "reconstruct_state",
    "ReconstructedState",
    "replay",
    "ReplayReport",
    "Resolution",
    "Runtime",
    "SequentialIds",
    "Session",
    "SystemClock",
    "TraceDiff",
    "TraceEvent",
    "TraceStorage",
    "UnavailableError",
    "validate_atlas",
    "ValidationError",
    "ValidationReport",
    "verify_chain",
    "write_jsonl",
]
