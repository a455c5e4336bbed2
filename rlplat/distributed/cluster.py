"""The one place that starts or joins Ray and sets the environment every actor sees."""

from __future__ import annotations

import os
import uuid
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group

from rlplat.config.errors import ConfigError
from rlplat.config.schema import ClusterConfig
from rlplat.distributed.placement import PlacementPlan


def actor_env(cluster: ClusterConfig) -> dict[str, str]:
    """Environment for every actor: offline hubs, quiet tokenizers, the CPU accelerator."""
    env = {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"),
        "DS_ACCELERATOR": "cpu" if cluster.device == "cpu" else os.environ.get("DS_ACCELERATOR", "cuda"),
    }
    return env


def start_ray(cluster: ClusterConfig) -> None:
    """Start a local Ray instance (``cluster.address`` unset) or join the given cluster."""
    if ray.is_initialized():
        return
    runtime_env: dict[str, Any] = {"env_vars": actor_env(cluster)}
    if cluster.address:
        ray.init(address=cluster.address, runtime_env=runtime_env, log_to_driver=True)
        return
    ray.init(num_cpus=cluster.num_cpus, num_gpus=None if cluster.device == "gpu" else 0,
             include_dashboard=cluster.dashboard, dashboard_host="127.0.0.1", runtime_env=runtime_env,
             log_to_driver=cluster.log_to_driver, configure_logging=False)


def check_resources(plan: PlacementPlan) -> None:
    """Fail fast, naming what is missing, when the cluster cannot hold the plan."""
    have = ray.cluster_resources()
    need: dict[str, float] = {}
    for b in plan.bundles:
        for k, v in b.items():
            need[k] = need.get(k, 0.0) + v
    for k, v in need.items():
        if have.get(k, 0.0) < v:
            raise ConfigError("cluster", f"the plan needs {v:g} {k} in total but the Ray cluster has "
                              f"{have.get(k, 0.0):g}.", "join a larger cluster (cluster.address) or "
                              "lower cluster.num_nodes / cluster.devices_per_node.")


def create_placement_group(plan: PlacementPlan, timeout_s: float) -> PlacementGroup:
    """Reserve the plan's bundles; raises ``TimeoutError`` naming the request if Ray cannot."""
    # A readable, unique name: it is how the placement group shows up in the Ray dashboard.
    pg = placement_group(list(plan.bundles), strategy=plan.strategy, name=f"rlplat-{uuid.uuid4().hex[:8]}")
    try:
        ray.get(pg.ready(), timeout=timeout_s)
    except ray.exceptions.GetTimeoutError as err:
        remove_placement_group(pg)
        raise TimeoutError(f"Ray could not reserve {len(plan.bundles)} bundles {plan.bundles[0]} "
                           f"({plan.strategy}) within {timeout_s:g} s; cluster has "
                           f"{ray.cluster_resources()}") from err
    return pg
