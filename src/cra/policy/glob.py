"""Action and agent globs (SPEC 3.1): ``*`` any run of characters (dots included), ``?`` exactly one,
everything else literal, case sensitive. Compiled once, at Atlas load."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

__all__ = ["compile_glob", "compile_globs", "is_glob"]

Matcher = Callable[[str], bool]


def is_glob(pattern: str) -> bool:
    """Whether the pattern has a wildcard (otherwise it names one id literally)."""
    return "*" in pattern or "?" in pattern


def compile_glob(pattern: str) -> Matcher:
    """A predicate that is true for the strings the glob matches in full."""
    if not is_glob(pattern):
        return pattern.__eq__
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    compiled = re.compile(regex, re.DOTALL)
    return lambda text: compiled.fullmatch(text) is not None


def compile_globs(patterns: Iterable[str]) -> Matcher:
    """A predicate true when any of the globs matches."""
    matchers = [compile_glob(p) for p in patterns]
    if len(matchers) == 1:
        return matchers[0]
    return lambda text: any(m(text) for m in matchers)
