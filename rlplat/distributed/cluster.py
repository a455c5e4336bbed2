"""The one place that starts or joins Ray and sets the environment every actor sees."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import uuid
from collections.abc import Iterator
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
        "TORCH_EXTENSIONS_DIR": torch_extensions_dir(),
    }
    return env


def torch_extensions_dir() -> str:
    """Where DeepSpeed's JIT-built ops (its CPU shared-memory collective) are cached: per virtual
    environment unless ``TORCH_EXTENSIONS_DIR`` says otherwise. In the shared ~/.cache, two virtual
    environments' sources differ, so each rebuilt the other's op, and a process killed while
    building left the lock every later learner waited on forever."""
    return os.environ.get("TORCH_EXTENSIONS_DIR", os.path.join(sys.prefix, "torch_extensions"))


def start_ray(cluster: ClusterConfig, log_to_driver: bool | None = None) -> str | None:
    """Start a local Ray instance (``cluster.address`` unset) or join the given cluster; returns
    the dashboard's URL (None without one, or when Ray was already initialised). Actor logs reach
    this process when joining a cluster, else with ``cluster.log_to_driver``; ``log_to_driver``
    overrides both (a stage's job keeps the setting of the run).

    A local instance listens on loopback only: its node address is 127.0.0.1, so Ray's GCS, raylet,
    object manager, workers and agents bind there (and so do the learners' rendezvous and gloo).
    A joined cluster uses the addresses its nodes were started with.
    """
    if ray.is_initialized():
        return None
    runtime_env: dict[str, Any] = {"env_vars": actor_env(cluster)}
    joined_logs = True if log_to_driver is None else log_to_driver
    if cluster.address:
        if cluster.address.split(":")[0] in (LOOPBACK, "localhost"):
            # A cluster on this machine's loopback (``ray.cluster_utils.Cluster`` in the tests):
            # join it there, not at the outward address Ray would otherwise substitute.
            keep_loopback_node_address()
            ctx = ray.init(address=cluster.address, runtime_env=runtime_env, log_to_driver=joined_logs,
                           _node_ip_address=LOOPBACK)
        else:
            ctx = ray.init(address=cluster.address, runtime_env=runtime_env, log_to_driver=joined_logs)
        return _url(ctx.dashboard_url)
    keep_loopback_node_address()
    # The processes this instance starts (dashboard agent, job drivers, workers) resolve "this
    # node" to loopback too: Ray's switch for clusterless machines, read when each imports Ray.
    # Without it the agent's job manager dials the GCS at the outward address, where nothing
    # listens, and every job submission hangs.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    for attempt in range(1, _START_ATTEMPTS + 1):
        try:
            with _free_agent_port():
                # address="local": a new instance even when another Ray runs on this machine (ray.init
                # with no address would join the one ``ray start`` last recorded, and refuse num_cpus).
                ctx = ray.init(address="local", num_cpus=cluster.num_cpus,
                               num_gpus=None if cluster.device == "gpu" else 0,
                               include_dashboard=cluster.dashboard, dashboard_host="127.0.0.1",
                               dashboard_port=cluster.dashboard_port, runtime_env=runtime_env,
                               log_to_driver=cluster.log_to_driver, configure_logging=False,
                               _node_ip_address=LOOPBACK, _system_config=LOCAL_SYSTEM_CONFIG)
            return _url(ctx.dashboard_url)
        except Exception as err:
            # Ray gives a new node's raylet a fixed 30 s to register (ray/_private/node.py); an
            # overloaded machine can take longer (a fault test failed so at a load of 22 on 2 cores).
            if "timed out during startup" not in str(err) or attempt == _START_ATTEMPTS:
                raise
            logging.getLogger(__name__).warning("Ray's node did not start within its 30 s (attempt %d of %d); "
                                                "starting it again", attempt, _START_ATTEMPTS)
            ray.shutdown()
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _free_agent_port() -> Iterator[None]:
    """Give a local instance's dashboard agent a free port instead of Ray's fixed 52365.

    ``ray.init`` offers no way to set it, and a second Ray instance on the machine (a test, another
    run) then has no agent, so Ray jobs cannot be submitted ("No available agent"). The agent's
    port is set by narrowing ``ray._private.parameter.RayParams`` during this ``ray.init`` only;
    if a Ray release renames it, a warning says so and Ray's default applies.
    """
    import socket

    from ray._private import parameter

    original = getattr(parameter, "RayParams", None)
    if original is None:
        logging.getLogger(__name__).warning("this Ray has no parameter.RayParams: the dashboard agent keeps "
                                            "its default port")
        yield
        return
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]

    class _Params(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("dashboard_agent_listen_port", port)
            super().__init__(*args, **kwargs)

    parameter.RayParams = _Params
    try:
        yield
    finally:
        parameter.RayParams = original


def _url(address: str | None) -> str | None:
    """``host:port`` as an http URL (Ray reports the dashboard without a scheme)."""
    if not address:
        return None
    return address if address.startswith("http") else f"http://{address}"


LOOPBACK = "127.0.0.1"
# A local instance starts no idle Python workers ahead of need: Ray prestarts one per logical CPU
# for tasks, but a run's work is actors with environments of their own (engines, learners), so the
# prestarted workers only sat idle, about 3 CPU-seconds of each launch on a 2-core machine.
LOCAL_SYSTEM_CONFIG = {"prestart_worker_first_driver": False, "enable_worker_prestart": False}
# Starts of a local Ray instance before giving up (Ray's own start-up deadline is fixed).
_START_ATTEMPTS = 3


def keep_loopback_node_address() -> None:
    """Let ``ray.init(_node_ip_address="127.0.0.1")`` mean loopback.

    Ray 2.60 rewrites a loopback node address into the machine's outward address
    (``ray._private.services.resolve_ip_for_localhost``), after which its servers listen on every
    interface. A local run needs no outside address, so that rewrite is skipped for this process's
    ``ray.init``; Ray's servers then bind to 127.0.0.1 (``tests/integration/test_weight_sync.py``
    checks every listening socket). If a Ray release moves the function, a warning says so.
    """
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
