"""Shared fixtures: a tiny local model, a local Ray instance, and the CPU environment.

Ray and the tiny model are session-scoped: a vLLM engine or a Ray start costs seconds to tens of
seconds on 2 cores, so the tests that need them share one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A randomly initialised tiny Llama with a char-level tokenizer (HF directory)."""
    from rlplat.models.tiny import build_tiny_llama

    return str(build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """A local Ray instance shared by the tests of the session."""
    import ray

    from rlplat.config.schema import ClusterConfig
    from rlplat.distributed.cluster import start_ray

    # Ray's workers inherit this environment: the test plugins (rewards) are importable by them.
    plugins = str(REPO / "tests" / "integration" / "plugins")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [plugins, os.environ.get("PYTHONPATH")]))
    start_ray(ClusterConfig(num_cpus=8, dashboard=False))
    yield
    ray.shutdown()
