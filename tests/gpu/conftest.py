"""The GPU checks (docs/gpu.md): what of the GPU path needs only torch, transformers and DeepSpeed.

Every test in this folder carries the ``gpu`` marker and is skipped, with the reason, where
``torch.cuda.is_available()`` is false, so the CPU suite collects and skips them. The folder imports
neither vLLM nor Ray, directly or through rlplat (``tests/unit/test_gpu_checks.py`` checks it): the
machine these checks are meant for may have neither. DeepSpeed may be missing too; the tests that
need it then skip, saying so. ``scripts/gpu_checks.sh`` runs them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rlplat.config.schema import ModelShape

HERE = Path(__file__).resolve().parent

# A Llama of 50.5M parameters (hidden 768, 8 layers, GQA with 4 KV heads): small enough to build in
# seconds, large enough that what a learner's offload moves (0.75 GiB in bf16: weights, fp32 master
# weights, Adam state, reference model) stands far above the CUDA allocator's granularity in
# ``torch.cuda.mem_get_info``.
GPU_MODEL = ModelShape(hidden_size=768, intermediate_size=2048, num_layers=8, num_heads=12, num_kv_heads=4,
                       max_position_embeddings=256)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip this folder's tests, with the reason, on a machine where CUDA is not available.

    The hook sees every collected item of the session, so it touches only those under this folder.
    """
    import torch

    if torch.cuda.is_available():
        return
    reason = (f"needs a CUDA GPU: torch.cuda.is_available() is False (torch {torch.__version__}, "
              f"CUDA build {torch.version.cuda or 'none'}); run scripts/gpu_checks.sh on a GPU machine")
    for item in items:
        if item.path.resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def gpu_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A randomly initialised ``GPU_MODEL`` Llama with the character tokenizer (a model directory,
    float32 on disk, as ``rlplat.models.tiny`` builds every test model)."""
    from rlplat.models.tiny import build_tiny_llama

    return str(build_tiny_llama(tmp_path_factory.mktemp("gpu_model") / "model", GPU_MODEL, seed=0))
