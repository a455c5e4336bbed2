"""Curricula: which prompts each GRPO step trains on (pure Python + numpy; no GPU, vLLM, Ray).

* ``PassRateStore``: per-prompt attempts/successes, seeded from a prefilter table, updated from
  every scored group, checkpointed.
* ``prefilter``: the paper's offline filter (drop prompts a reference model passes >= 0.75 of the time).
* ``ProgressiveCurriculum``: the paper's progressive batching; ``UniformCurriculum``: the baseline.
* ``split_informative`` / ``fill_batch`` / ``dynamic_sampling_metrics``: DAPO dynamic sampling (drop
  groups whose rewards are all equal, refill, log).
* ``build_curriculum(name_or_import_path, uids=..., seed=..., total_steps=..., store=..., **options)``,
  on ``rlbase.Registry``; ``curriculum_options`` parses ``curriculum.options`` into the typed options.

See docs/curricula.md for the algorithms, defaults, metrics and how to write your own curriculum.
"""

from curricula.base import Curriculum
from curricula.buckets import (
    allocate,
    bucket_centres,
    bucket_of,
    center_at,
    interpolate_center,
    resolve_center_range,
    target_distribution,
)
from curricula.dynamic import (
    dynamic_dropped_frac,
    dynamic_sampling_metrics,
    fill_batch,
    is_informative,
    split_informative,
)
from curricula.options import ProgressiveOptions, UniformOptions
from curricula.outcome import GroupOutcome, outcomes_from_lists
from curricula.prefilter import (
    PrefilterResult,
    filter_rows,
    prefilter,
    write_filtered_dataset,
    write_pass_rate_table,
)
from curricula.progressive import ProgressiveCurriculum
from curricula.registry import (
    available_curricula,
    build_curriculum,
    check_curriculum_config,
    curriculum_option_types,
    curriculum_options,
    option_defaults,
    register_curriculum,
    resolve_curriculum,
    resolve_factory,
)
from curricula.store import PassRateStore, PromptStats, read_jsonl
from curricula.tracking import RetireRule, difficulty_metrics
from curricula.uniform import UniformCurriculum

__all__ = [
    "Curriculum",
    "GroupOutcome",
    "PassRateStore",
    "PrefilterResult",
    "ProgressiveCurriculum",
    "ProgressiveOptions",
    "PromptStats",
    "RetireRule",
    "UniformCurriculum",
    "UniformOptions",
    "allocate",
    "available_curricula",
    "bucket_centres",
    "bucket_of",
    "build_curriculum",
    "center_at",
    "check_curriculum_config",
    "curriculum_option_types",
    "curriculum_options",
    "difficulty_metrics",
    "dynamic_dropped_frac",
    "dynamic_sampling_metrics",
    "fill_batch",
    "filter_rows",
    "interpolate_center",
    "is_informative",
    "option_defaults",
    "outcomes_from_lists",
    "prefilter",
    "read_jsonl",
    "register_curriculum",
    "resolve_center_range",
    "resolve_curriculum",
    "resolve_factory",
    "split_informative",
    "target_distribution",
    "write_filtered_dataset",
    "write_pass_rate_table",
]
