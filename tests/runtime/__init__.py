"""Behavioural tests of the embedded runtime (cra.Runtime), against /work/shared/SPEC.md."""
