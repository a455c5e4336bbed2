"""The plain-read safetensors reader of ZeRO-3's sharded start (``rlplat.learner.zero3``): every
tensor as safetensors itself loads it, whatever its dtype and shape."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from rlplat.learner.zero3 import SafetensorsReader


def test_every_tensor_reads_back_as_safetensors_loads_it(tmp_path: Path) -> None:
    tensors = {"w.f32": torch.randn(3, 5), "w.bf16": torch.randn(4, 2).to(torch.bfloat16),
               "ids": torch.arange(7, dtype=torch.int64), "empty": torch.zeros(0, 4), "scalar": torch.tensor(2.5),
               "fp8": torch.randn(8).to(torch.float8_e4m3fn)}
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    expected = load_file(str(path))
    with SafetensorsReader(path) as reader:
        assert reader.names() == sorted(tensors)
        for name in reader.names():
            got = reader.read(name)
            assert got.dtype == expected[name].dtype and got.shape == expected[name].shape
            assert torch.equal(got.reshape(-1).view(torch.uint8), expected[name].reshape(-1).view(torch.uint8)), name
