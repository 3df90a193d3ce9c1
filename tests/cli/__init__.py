"""Tests of the ``cra`` command line (cra.cli), against /work/shared/SPEC.md sections 8 and 9."""
