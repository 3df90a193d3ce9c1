"""The conformance runner (SPEC 9): run ``*.json`` cases against a fresh runtime each."""

from .runner import CaseResult, ConformanceReport, run_case, run_directory

__all__ = ["CaseResult", "ConformanceReport", "run_case", "run_directory"]
