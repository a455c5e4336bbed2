"""Fixtures of the integration tests, each shared by the session: the uninterrupted reference run; the
monitored curriculum run (with a real Prometheus when it is installed); a heterogeneous (DeciLM)
child of the tiny model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from launch_helpers import FAST, finish, free_port, launch, plugin_env, start, wait_until_serving
from rlplat.models.decilm import HeteroLlamaForCausalLM, save_decilm
from rlplat.models.decilm_format import AttentionConfig, BlockConfig, FFNConfig, HeteroLlamaConfig
from rlplat.models.hf import copy_tokenizer

# Every kind of block vLLM's DeciLM builds: GQA with 2, 1 and 4 KV heads (hidden 128, 4 heads: head
# size 32, one of vLLM's CPU attention sizes), no attention, no FFN, both absent, ffn_mult widths and
# an exact intermediate_size.
DECILM_BLOCKS = (
    BlockConfig(AttentionConfig("full", 2), FFNConfig("full", ffn_mult=1.0)),
    BlockConfig(AttentionConfig("none"), FFNConfig("full", ffn_mult=5.25)),
    BlockConfig(AttentionConfig("full", 4), FFNConfig("none")),
    BlockConfig(AttentionConfig("none"), FFNConfig("none")),
    BlockConfig(AttentionConfig("full", 1), FFNConfig("full", intermediate_size=384)),
)


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The FAST config run to completion (4 steps, checkpoints at 2 and 4)."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    rc, out = launch(run_dir)
    assert rc == 0, out[-3000:]
    return run_dir


# prefilter -> grpo with a progressive curriculum, dynamic sampling, held-out evaluation (and the
# toggle's), TIS, packed rows and the shared pass-rate store, the stages as Ray jobs: what the
# curriculum and the monitoring tests read.
MONITORED = ["stages=[prefilter,grpo]", "curriculum.name=progressive", "curriculum.dynamic_sampling=true",
             "curriculum.dynamic_max_rounds=1", "prefilter.samples=4", "grpo.eval_every=2", "grpo.eval_prompts=8",
             "grpo.eval_samples=2", "reward.components={coin_flip: 1.0}", "reward.modules=[coin_rewards]",
             "grpo.mismatch.mode=tis", "grpo.old_logprobs=learner", "cluster.dashboard=true",
             "curriculum.shared_store=true",
             # GRPO on packed rows under a token budget, the toggle measured in both modes.
             "learner.pack_tokens=96", "learner.max_tokens_per_micro_batch=384", "grpo.toggle_eval=true",
             # One learner beside one engine: what is tested is the curriculum and what reaches
             # Prometheus, not the ranks.
             "cluster.devices_per_node=1"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int | None]:
    """``scripts/monitor.sh`` on a free loopback port, scraping every second; None when prometheus
    is not installed (the monitoring tests then skip; the run still happens)."""
    if shutil.which("prometheus") is None:
        yield None
        return
    port, data = free_port(), tmp_path_factory.mktemp("prometheus")
    env = {**os.environ, "PROM_PORT": str(port), "PROM_DATA": str(data), "SCRAPE_INTERVAL": "1s"}
    proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "monitor.sh")], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(data / "prometheus.log", "w"), start_new_session=True)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/-/ready", proc, 60, "prometheus did not start (prometheus.log)")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def monitored_run(prometheus: int | None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, float, str]:
    """The ``MONITORED`` run: its directory, the Unix times it started and ended, and what the Ray
    dashboard's Prometheus health check answered while the run was on (the launcher sets
    ``RAY_PROMETHEUS_HOST``, which Ray's dashboard reads for its Metrics view)."""
    run_dir = tmp_path_factory.mktemp("monitored") / "mon_run"
    t0 = time.time()
    fast = [a for a in FAST if not a.startswith("cluster.dashboard=")]
    env = plugin_env()
    if prometheus is not None:
        env["RAY_PROMETHEUS_HOST"] = f"http://127.0.0.1:{prometheus}"
    proc = start(run_dir, *fast, *MONITORED, fast=False, env=env)
    health = ""
    while proc.poll() is None and prometheus is not None and "prometheus running" not in health:
        health = _dashboard_health()
        time.sleep(1)
    rc, out = finish(proc, run_dir)
    assert rc == 0, out[-3000:]
    return run_dir, t0, time.time(), health


def _dashboard_health() -> str:
    """The body of the dashboard's ``/api/prometheus_health`` with Ray's auth token, or the error."""
    token = (Path.home() / ".ray" / "auth_token").read_text().strip()
    req = urllib.request.Request("http://127.0.0.1:8265/api/prometheus_health",
                                 headers={"authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.read().decode()
    except OSError as err:
        return str(err)


@pytest.fixture(scope="session")
def decilm_child(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, HeteroLlamaForCausalLM]:
    """A randomly initialised heterogeneous child (``DECILM_BLOCKS``) with the tiny Llama's vocabulary
    and tokenizer, saved as DeciLM; and the module itself (in eval mode)."""
    parent = json.loads((Path(tiny_model) / "config.json").read_text())
    config = HeteroLlamaConfig(vocab_size=parent["vocab_size"], hidden_size=parent["hidden_size"],
                               num_attention_heads=parent["num_attention_heads"], blocks=DECILM_BLOCKS,
                               max_position_embeddings=parent["max_position_embeddings"],
                               pad_token_id=parent["pad_token_id"], bos_token_id=parent["bos_token_id"],
                               eos_token_id=parent["eos_token_id"])
    torch.manual_seed(0)
    model = HeteroLlamaForCausalLM(config).eval()
    out = save_decilm(model, tmp_path_factory.mktemp("decilm") / "child")
    copy_tokenizer(Path(tiny_model), out)
    return out, model
