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
    """Start a local Ray instance (``cluster.address`` unset) or join the given cluster.

    A local instance listens on loopback only: its node address is 127.0.0.1, so Ray's GCS, raylet,
    object manager, workers and agents bind there (and so do the learners' rendezvous and gloo).
    A joined cluster uses the addresses its nodes were started with.
    """
    if ray.is_initialized():
        return
    runtime_env: dict[str, Any] = {"env_vars": actor_env(cluster)}
    if cluster.address:
        if cluster.address.split(":")[0] in (LOOPBACK, "localhost"):
            # A cluster on this machine's loopback (``ray.cluster_utils.Cluster`` in the tests):
            # join it there, not at the outward address Ray would otherwise substitute.
            keep_loopback_node_address()
            ray.init(address=cluster.address, runtime_env=runtime_env, log_to_driver=True,
                     _node_ip_address=LOOPBACK)
        else:
            ray.init(address=cluster.address, runtime_env=runtime_env, log_to_driver=True)
        return
    keep_loopback_node_address()
    ray.init(num_cpus=cluster.num_cpus, num_gpus=None if cluster.device == "gpu" else 0,
             include_dashboard=cluster.dashboard, dashboard_host="127.0.0.1", runtime_env=runtime_env,
             log_to_driver=cluster.log_to_driver, configure_logging=False, _node_ip_address=LOOPBACK)


LOOPBACK = "127.0.0.1"


def keep_loopback_node_address() -> None:
    """Let ``ray.init(_node_ip_address="127.0.0.1")`` mean loopback.

    Ray 2.60 rewrites a loopback node address into the machine's outward address
    (``ray._private.services.resolve_ip_for_localhost``), after which its servers listen on every
    interface. A local run needs no outside address, so that rewrite is skipped for this process's
    ``ray.init``; Ray's servers then bind to 127.0.0.1 (``tests/integration/test_weight_sync.py``
    checks every listening socket). If a Ray release moves the function, a warning says so.
    """
    import logging

    from ray._private import services

    if not hasattr(services, "resolve_ip_for_localhost"):
        logging.getLogger(__name__).warning("this Ray has no services.resolve_ip_for_localhost: a local Ray "
                                            "instance may listen on all interfaces")
        return
    services.resolve_ip_for_localhost = _as_given


def _as_given(host: str) -> str:
    return host


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
