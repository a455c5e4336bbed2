"""Placement planning (pure)."""

from rlplat.config.schema import ClusterConfig, RolloutConfig
from rlplat.distributed.placement import cpu_binds, plan_placement


def test_colocated_plan_has_one_bundle_per_device_and_tp_engines() -> None:
    plan = plan_placement(ClusterConfig(device="gpu", num_nodes=2, devices_per_node=8),
                          RolloutConfig(tensor_parallel_size=8))
    assert len(plan.bundles) == 16 and plan.bundles[0] == {"CPU": 2.0, "GPU": 1.0}
    assert plan.num_learners == 16 and plan.num_engines == 2
    assert plan.engine_bundles[1] == tuple(range(8, 16)) and plan.colocated


def test_separate_plan_splits_devices() -> None:
    plan = plan_placement(ClusterConfig(device="gpu", devices_per_node=8, colocate=False, rollout_devices=2),
                          RolloutConfig())
    assert plan.learner_bundles == tuple(range(6)) and plan.engine_bundles == ((6,), (7,))
    assert not plan.colocated


def test_cpu_binds_split_cores_between_engines() -> None:
    plan = plan_placement(ClusterConfig(devices_per_node=2), RolloutConfig())
    assert cpu_binds(plan, 2, 2) == ["0", "1"]
    assert cpu_binds(plan_placement(ClusterConfig(devices_per_node=1), RolloutConfig()), 2, 1) == ["0-1"]
    # Separate bundles: the engine gets its bundle's core, not the learner's (asynchronous GRPO
    # trains while it generates).
    separate = plan_placement(ClusterConfig(devices_per_node=2, colocate=False, rollout_devices=1), RolloutConfig())
    assert cpu_binds(separate, 2, 2) == ["1"]
    two = plan_placement(ClusterConfig(devices_per_node=3, colocate=False, rollout_devices=2), RolloutConfig())
    assert cpu_binds(two, 2, 3) == ["1", "0"] and cpu_binds(two, 6, 3) == ["2-3", "4-5"]


def test_a_tensor_parallel_engine_sees_the_gpus_its_workers_hold_and_a_teacher_gets_a_share() -> None:
    """With TP > 1 the engine actor holds no GPU (its vLLM workers do, one per bundle), so Ray hands
    it an empty CUDA_VISIBLE_DEVICES: the engine unsets it before importing vLLM. A teacher in that
    slot is one process with its own model: it gets the slot's first bundle's share."""
    from rlplat.rollout.worker import EngineSpec, engine_env

    rollout = RolloutConfig(tensor_parallel_size=2)
    plan = plan_placement(ClusterConfig(device="gpu", devices_per_node=4), rollout)
    assert plan.engine_gpus == 0.0 and plan.teacher_gpus == plan.learner_gpus > 0
    tp = EngineSpec("m", "bfloat16", "gpu", rollout, 0, bundles=plan.engine_bundles[0],
                    worker_gpu_share=plan.engine_worker_gpus)
    env = engine_env(tp)
    assert "CUDA_VISIBLE_DEVICES" in env and env["CUDA_VISIBLE_DEVICES"] is None
    assert env["VLLM_RAY_BUNDLE_INDICES"] == "0,1"
    # One GPU per engine: Ray's CUDA_VISIBLE_DEVICES is the engine's own and stays.
    single = EngineSpec("m", "bfloat16", "gpu", RolloutConfig(), 0)
    assert "CUDA_VISIBLE_DEVICES" not in engine_env(single)
    assert plan_placement(ClusterConfig(device="gpu", devices_per_node=4), RolloutConfig()).engine_gpus > 0


def test_an_eager_cpu_engine_runs_the_sampler_helpers_uncompiled() -> None:
    """vLLM torch.compiles sampler helpers even with ``enforce_eager``; on CPU the engine turns
    TorchDynamo off so that its first generation does not wait seconds for Inductor. GPU engines,
    and CPU engines that ask for compilation, keep it."""
    from rlplat.rollout.worker import EngineSpec, engine_env

    assert engine_env(EngineSpec("m", "float32", "cpu", RolloutConfig(), 0))["TORCHDYNAMO_DISABLE"] == "1"
    assert "TORCHDYNAMO_DISABLE" not in engine_env(EngineSpec("m", "float32", "cpu", RolloutConfig(enforce_eager=False), 0))
    assert "TORCHDYNAMO_DISABLE" not in engine_env(EngineSpec("m", "bfloat16", "gpu", RolloutConfig(), 0))
