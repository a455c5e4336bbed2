"""ZeRO-3 start-up without whole copies (``rlplat.learner.zero3``): two ranks build a 100M Llama
already sharded, and each one's peak host memory while it does stays well below the model's size.
Loading it whole, what every rank did before, costs each rank the whole model (1.06x, measured with
``sharded=False``: this test then fails)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlplat.config.loader import load
from rlplat.models.tiny import build_tiny_llama


@pytest.fixture(scope="module")
def model_100m(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """``model=llama_100m`` (0.38 GiB in float32, tensors of 0.6-6 MiB): large enough that a rank's
    half dwarfs the constant part of a start (buffers, allocator)."""
    cfg, _ = load(["model=llama_100m"])
    path = build_tiny_llama(tmp_path_factory.mktemp("zero3") / "model", cfg.model.tiny)
    return path, (path / "model.safetensors").stat().st_size


def peaks(path: Path, sharded: bool) -> list[float]:
    """Each of two ranks' peak host memory above its start while it built the model."""
    import torch.multiprocessing as mp
    from zero3_ranks import startup_rank  # a module of its own: the spawned ranks import only it

    from launch_helpers import free_port

    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(startup_rank, args=(free_port(), str(path), sharded, out), nprocs=2)
        return [out[0], out[1]]


def test_a_sharded_start_holds_half_the_model_per_rank(model_100m: tuple[Path, int]) -> None:
    path, size = model_100m
    for rank, peak in enumerate(peaks(path, sharded=True)):
        print(f"rank {rank}: {peak / 2**30:.3f} GiB = {peak / size:.2f} x the model ({size / 2**30:.3f} GiB)")
        assert peak < 0.75 * size, (rank, peak, size)
