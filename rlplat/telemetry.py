"""Ray metrics of a run, tagged with run, experiment and stage (docs/monitoring.md).

Every series is called ``rlplat_<name>`` (Ray's export adds ``ray_``: ``ray_rlplat_pass_rate``)
and carries the tags ``run`` (the run directory's name), ``experiment`` and ``stage``, so two runs
on one Ray cluster keep separate series. Each value comes from the process that knows it: the
driver sets a gauge per step metric and counts restarts; the rollout workers observe response
lengths; the reward scorer observes verifier latency and counts timeouts and errors. Ray's
metrics agent on each node serves them on its export port, which Prometheus scrapes through
Ray's service-discovery file (``make monitor``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TAG_KEYS = ("run", "experiment", "stage")
# Histogram bucket boundaries: verifier seconds (milliseconds to the default 10 s timeout) and
# response lengths in tokens.
LATENCY_BOUNDARIES = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LENGTH_BOUNDARIES = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)

# The metrics' Ray objects of this process, by name (Ray refuses a second definition of a name).
_METRICS: dict[str, Any] = {}


@dataclass(frozen=True)
class MetricTags:
    """The tags every rlplat series carries."""

    run: str
    experiment: str
    stage: str

    def as_dict(self) -> dict[str, str]:
        """The tags as Ray takes them."""
        return asdict(self)


def run_tags(run_dir: str | Path, experiment: str, stage: str) -> MetricTags:
    """The tags of ``stage`` of the run in ``run_dir``."""
    return MetricTags(Path(run_dir).name, experiment, stage)


def metric_name(key: str) -> str:
    """``rlplat_`` plus ``key`` with every character Prometheus does not allow made ``_``."""
    return "rlplat_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


def _metric(kind: str, name: str, description: str, boundaries: Sequence[float] = ()) -> Any:
    from ray.util import metrics

    if name not in _METRICS:
        if kind == "histogram":
            _METRICS[name] = metrics.Histogram(name, description, list(boundaries), tag_keys=TAG_KEYS)
        else:
            _METRICS[name] = getattr(metrics, kind.capitalize())(name, description, tag_keys=TAG_KEYS)
    return _METRICS[name]


def set_gauge(name: str, value: float, tags: MetricTags, description: str = "") -> None:
    """Set gauge ``name`` (a ``metric_name``) for ``tags``."""
    _metric("gauge", name, description or name).set(value, tags=tags.as_dict())


def count(name: str, amount: float, tags: MetricTags, description: str = "") -> None:
    """Add ``amount`` (> 0) to counter ``name`` for ``tags``."""
    if amount > 0:
        _metric("counter", name, description or name).inc(amount, tags=tags.as_dict())


def observe(name: str, values: Sequence[float], tags: MetricTags, boundaries: Sequence[float],
            description: str = "") -> None:
    """Record each of ``values`` in histogram ``name`` (buckets ``boundaries``) for ``tags``."""
    hist = _metric("histogram", name, description or name, boundaries)
    for v in values:
        hist.observe(v, tags=tags.as_dict())
