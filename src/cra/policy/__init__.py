"""Policy evaluation: globs, conditions, limits and the compiled per-action plans (SPEC 3.1)."""
