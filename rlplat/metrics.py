"""Step metrics: ``metrics.jsonl`` (one JSON object per step), tagged Ray metrics, TensorBoard,
Weights & Biases (offline), and the progress line.

Every GRPO step line carries ``STEP_KEYS`` (docs/design.md, contract 3); stages add prefixed keys.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from typing_extensions import Self

from rlbase import append_line, write_jsonl
from rlplat.config.schema import MetricsConfig
from rlplat.progress import Progress
from rlplat.telemetry import MetricTags, count, metric_name, set_gauge

STEP_KEYS = (
    "step", "reward/mean", "pass_rate", "kl", "entropy", "response_length/mean", "time/step_s",
    "time/rollout_s", "time/reward_s", "time/train_s", "time/sync_s", "tokens/generated",
    "tokens_per_s", "sync/bytes", "weights/version",
)

# Run totals (restarts, dropped prompts): Ray counters, increased by what each step adds.
COUNTED_KEYS = ("faults/rollout_restarts", "faults/reward_restarts", "faults/dropped_prompts", "faults/fp8_fallbacks")

# GRPO's keys on the progress bar or line, in this order, with their short names.
GRPO_BAR_KEYS = (("pass_rate", "pass"), ("reward/mean", "reward"), ("kl", "kl"), ("time/step_s", "s/step"))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All step lines of a ``metrics.jsonl``."""
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def truncate_after(path: str | Path, step: int) -> None:
    """Drop lines with ``step`` greater than ``step`` (resume continues after a checkpoint)."""
    write_jsonl(path, [m for m in read_metrics(path) if m.get("step", 0) <= step], fsync=True)


class MetricsLogger:
    """One stage's step lines, written to every sink the run asks for.

    * ``path`` (JSONL, one object per step): flushed and fsynced, so a crash loses no logged step.
      A stage that starts at step 0 truncates it; a resumed one appends (``truncate_after`` has
      cut it back to the checkpoint).
    * With ``tags``: Ray metrics (``rlplat.telemetry``), a gauge per numeric key and a counter per
      key of ``COUNTED_KEYS``.
    * ``settings.tensorboard``: event files in ``<run_dir>/tensorboard/<stage>``; a resumed stage
      purges the events after its checkpoint, as the JSONL file does.
    * ``settings.wandb``: a Weights & Biases run in offline mode under ``<run_dir>/wandb``.
    * A progress bar or plain line per step (``rlplat.progress``; plain lines at most every
      ``min_interval_s``), showing ``bar_keys``. ``config`` is the run's config, for wandb.
    """

    def __init__(self, run_dir: Path, stage: str, total_steps: int, start_step: int, *, path: Path | None = None,
                 settings: MetricsConfig | None = None, progress: bool = True, tags: MetricTags | None = None,
                 bar_keys: Sequence[tuple[str, str]] = GRPO_BAR_KEYS, config: Mapping[str, Any] | None = None,
                 min_interval_s: float = 0.0) -> None:
        settings = settings or MetricsConfig(tensorboard=False)
        self.path = path or run_dir / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a" if start_step else "w", encoding="utf-8")
        self.tags, self.bar_keys = tags, bar_keys
        # Counted totals already exported by this process (a resumed run counts from its checkpoint).
        self.counted: dict[str, float] = {}
        self.progress = Progress(stage, total_steps, start_step, enabled=progress, min_interval_s=min_interval_s)
        self.tensorboard = _tensorboard(run_dir / "tensorboard" / stage, start_step) if settings.tensorboard else None
        self.wandb = _wandb_run(run_dir, stage, settings.wandb_project, config) if settings.wandb else None

    def log(self, metrics: Mapping[str, Any]) -> None:
        """Write one step's metrics (``step`` included); values must be JSON numbers (NaN/inf
        written as null)."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in metrics.items()}
        append_line(self.file, json.dumps(clean))
        numeric = {k: float(v) for k, v in clean.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        step = int(numeric.get("step", self.progress.done + 1))
        if self.tags is not None:
            self._export(numeric, self.tags)
        if self.tensorboard is not None:
            for key, value in numeric.items():
                self.tensorboard.add_scalar(key, value, step)
            self.tensorboard.flush()
        if self.wandb is not None:
            self.wandb.log(numeric, step=step)
        self.progress.update(1, **{short: clean.get(k) for k, short in self.bar_keys})

    def _export(self, metrics: Mapping[str, float], tags: MetricTags) -> None:
        """Gauges ``rlplat_<key>``, and counters for the run totals of ``COUNTED_KEYS``."""
        for key, value in metrics.items():
            if key in COUNTED_KEYS:
                count(metric_name(key), value - self.counted.get(key, 0.0), tags, f"rlplat run total {key}")
                self.counted[key] = value
            else:
                set_gauge(metric_name(key), value, tags, f"rlplat step metric {key}")

    def close(self) -> None:
        """Close the file and every sink."""
        self.file.close()
        self.progress.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            import wandb

            self.wandb.finish()
            # finish() can return before wandb's service process has written the run's log;
            # teardown waits for that process, so the offline run is complete when the stage ends.
            wandb.teardown()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tensorboard(log_dir: Path, start_step: int) -> Any:
    """A TensorBoard writer; a resumed stage hides the events logged after its checkpoint."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(log_dir), purge_step=start_step + 1 if start_step else None)


def _wandb_run(run_dir: Path, stage: str, project: str, config: Mapping[str, Any] | None) -> Any:
    """An offline Weights & Biases run for ``stage``, grouped by run (``wandb sync`` uploads it)."""
    import wandb

    run_id = re.sub(r"[^A-Za-z0-9_-]", "-", f"{run_dir.name}-{stage}")
    return wandb.init(project=project, name=f"{run_dir.name}/{stage}", group=run_dir.name, job_type=stage,
                      id=run_id, dir=str(run_dir), mode="offline", resume="allow", config=dict(config or {}))
