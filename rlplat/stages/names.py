"""Stage names (kept apart from ``pipeline`` so that validation imports no stage code)."""

STAGE_NAMES = ("warmstart", "prefilter", "grpo")
