"""Curricula: which prompts each GRPO step trains on (pure Python + numpy; no GPU, vLLM, Ray).

* ``PassRateStore``: per-prompt attempts/successes, seeded from a prefilter table, updated from
  every scored group, checkpointed.
* ``prefilter``: the paper's offline filter (drop prompts a reference model passes >= 0.75 of the time).
* ``ProgressiveCurriculum``: the paper's progressive batching; ``UniformCurriculum``: the baseline.
* ``split_informative``: DAPO dynamic sampling's filter (drop groups whose rewards are all equal).
* ``build_curriculum(name_or_import_path, uids=..., seed=..., total_steps=..., store=..., **options)``.

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
from curricula.dynamic import dynamic_dropped_frac, dynamic_sampling_metrics, is_informative, split_informative
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
    option_defaults,
    register_curriculum,
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
    "difficulty_metrics",
    "dynamic_dropped_frac",
    "dynamic_sampling_metrics",
    "filter_rows",
    "interpolate_center",
    "is_informative",
    "option_defaults",
    "outcomes_from_lists",
    "prefilter",
    "read_jsonl",
    "register_curriculum",
    "resolve_center_range",
    "split_informative",
    "target_distribution",
    "write_filtered_dataset",
    "write_pass_rate_table",
]
