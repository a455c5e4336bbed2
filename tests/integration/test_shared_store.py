"""The run's pass-rate store as a Ray actor (``curriculum.shared_store=true``): one actor per run
that every driver on the cluster reaches by name, filled by the prefilter, read by GRPO."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launch_helpers import FAST, launch, plugin_env

pytestmark = pytest.mark.slow


def test_every_driver_reaches_the_same_store_and_release_ends_it(ray_local: None) -> None:
    import ray

    from rlplat.runtime.pass_rates import NAMESPACE, actor_name, release, shared_store

    @ray.remote(num_cpus=0)
    def another_driver() -> int:  # a task stands in for a second job's driver
        return int(ray.get(shared_store("run_x").update.remote([("b", 8, 2), ("a", 4, 4)])))

    store = shared_store("run_x")
    assert ray.get(store.reset.remote([{"uid": "a", "attempts": 8, "successes": 1}])) == 1
    assert ray.get(another_driver.remote()) == 2
    rows = {r["uid"]: (r["attempts"], r["successes"]) for r in ray.get(shared_store("run_x").table_rows.remote())}
    assert rows == {"a": (12, 5), "b": (8, 2)}
    assert ray.get(shared_store("run_y").table_rows.remote()) == []  # another run, another store
    release("run_x")
    release("run_y")
    release("never_created")
    with pytest.raises(ValueError):
        ray.get_actor(actor_name("run_x"), namespace=NAMESPACE)


def test_grpo_seeds_its_curriculum_from_the_prefilters_shared_table(tmp_path: Path) -> None:
    run = tmp_path / "run"
    fast = [a for a in FAST if not a.startswith("cluster.dashboard=")]  # stages as Ray jobs: two drivers
    rc, out = launch(run, *fast, "cluster.dashboard=true", "stages=[prefilter,grpo]", "prefilter.samples=4",
                     "curriculum=progressive", "curriculum.shared_store=true", "reward.components={coin_flip: 1.0}",
                     "reward.modules=[coin_rewards]", fast=False, env=plugin_env())
    assert rc == 0, out[-3000:]
    table = (run / "prefilter" / "pass_rates.jsonl").read_text().splitlines()
    assert f"curriculum: store seeded from the shared store ({len(table)} prompts)" in out
    assert json.loads(table[0])["attempts"] == 4
