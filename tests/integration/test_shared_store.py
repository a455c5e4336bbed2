"""The run's pass-rate store as a Ray actor (``curriculum.shared_store=true``): one actor per run
that every driver on the cluster reaches by name. That the prefilter fills it and GRPO seeds from
it, each in its own Ray job, is checked in ``test_monitoring.py``'s run."""

from __future__ import annotations

import pytest

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
