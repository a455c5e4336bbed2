"""One rank of ``test_zero3_startup.py``, spawned twice: a module of its own so that the spawned
processes import torch, DeepSpeed and the learner's loading code, not Ray."""

from __future__ import annotations


def startup_rank(rank: int, port: int, path: str, sharded: bool, out: dict[int, float]) -> None:
    """Rank ``rank`` of two builds the model of ``path`` as a ZeRO-3 learner rank does, built
    sharded (``sharded``) or loaded whole, and records in ``out[rank]`` its peak host memory while it
    did, above what it held before (the learner's ``load_peak_bytes``)."""
    import os
    from dataclasses import replace

    import torch

    from rlplat.config.schema import LearnerConfig
    from rlplat.distributed.cluster import torch_extensions_dir
    from rlplat.learner.ds_config import build_ds_config
    from rlplat.learner.zero3 import host_memory, load_sharded, prepare_sharded
    from rlplat.models.hf import import_model_code, load_causal_lm

    os.environ.update(DS_ACCELERATOR="cpu", GLOO_SOCKET_IFNAME="lo", LOCAL_RANK=str(rank),
                      TORCH_EXTENSIONS_DIR=torch_extensions_dir())
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo")
    ds_cfg = build_ds_config(replace(LearnerConfig(), zero_stage=3), 1e-5, 2, "cpu", "float32")
    import_model_code(path)  # imports outside the window, as the learner's
    prepare_sharded()

    before = host_memory(reset_peak=True)
    model = load_sharded(path, torch.float32, ds_cfg, rank) if sharded else load_causal_lm(path, torch.float32)
    # Read every weight this rank holds, as its first step will: a whole model read from a memory map
    # is only resident once its pages are touched.
    held = [getattr(p, "ds_tensor", p) for p in model.parameters()]
    assert all(torch.isfinite(t).all() for t in held)
    out[rank] = host_memory()["peak"] - before["current"]
    del model
    torch.distributed.destroy_process_group()
