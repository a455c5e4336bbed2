"""Two simulated nodes (``ray.cluster_utils.Cluster``): placement spreads, cross-node sync works.

Learners on one node and the engine on the other (non-colocated, STRICT_SPREAD): the engine has no
learner beside it, so every weight sync travels through the Ray object store.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from launch_helpers import FAST
from rlplat.metrics import read_metrics

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[str]:
    """Two simulated 2-CPU nodes and a head without CPUs, shared by this file's tests; their address."""
    from ray.cluster_utils import Cluster

    from rlplat.distributed.cluster import LOOPBACK, keep_loopback_node_address

    # Nodes on loopback whatever ran before in this process: the launcher joins them there.
    keep_loopback_node_address()
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 0, "include_dashboard": False, "node_ip_address": LOOPBACK})
    for _ in range(2):
        cluster.add_node(num_cpus=2, node_ip_address=LOOPBACK)
    cluster.wait_for_nodes()
    yield cluster.address
    cluster.shutdown()


def test_spread_placement_and_object_store_sync(two_nodes: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [f"hydra.run.dir={run_dir}", *FAST, "grpo.total_steps=2", f"cluster.address={two_nodes}",
            "cluster.num_nodes=2", "cluster.devices_per_node=1", "cluster.colocate=false",
            "cluster.rollout_devices=1", "cluster.placement_strategy=STRICT_SPREAD", "stages=[grpo]"]
    out = subprocess.run([sys.executable, "-m", "rlplat.launch", *args], capture_output=True, text=True,
                         timeout=600, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-3000:]
    placement = json.loads((run_dir / "placement.json").read_text())
    learner_nodes = {p["node_id"] for p in placement["learners"]}
    engine_nodes = {p["node_id"] for p in placement["engines"]}
    assert len(learner_nodes) == 1 and len(engine_nodes) == 1 and learner_nodes != engine_nodes
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["sync/object_store_engines"] == 1 and r["sync/bytes"] > 0 for r in rows)


def test_a_local_run_starts_its_own_ray_beside_a_running_cluster(two_nodes: str) -> None:
    """Without ``cluster.address`` a run starts its own instance even while another Ray cluster runs
    on the machine (``ray.init()`` would join the one last started and refuse ``num_cpus``: a fault
    test failed so while another session's two-node cluster was up)."""
    code = ("import ray; from rlplat.config.schema import ClusterConfig; "
            "from rlplat.distributed.cluster import start_ray; "
            "start_ray(ClusterConfig(num_cpus=1, dashboard=False)); "
            "print(ray.get_runtime_context().gcs_address); ray.shutdown()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] != two_nodes
