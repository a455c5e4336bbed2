"""vLLM serves a heterogeneous child saved by ``save_decilm`` with its own ``DeciLMForCausalLM``, and
its greedy tokens are the module's own.

vLLM runs in a child process: the engine binds OpenMP threads and spawns helpers at import time,
which must not leak into the pytest process (docs/design.md: vLLM code runs under ``__main__`` or in
an actor).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from rlplat.config.schema import RolloutConfig
from rlplat.models.decilm import HeteroLlamaForCausalLM
from rlplat.models.decilm_format import ffn_width
from rlplat.models.hf import greedy_decode
from rlplat.rollout.worker import EngineSpec, engine_env

pytestmark = pytest.mark.slow

NEW_TOKENS = 16
PROMPTS = ("[U]What is 12+7?\n[A]", "hello world", "The quick brown fox")

# The engine side, run as a script: greedy tokens and their logprobs per prompt, and vLLM's own FFN
# width rule for a few (hidden, ffn_mult) pairs. Settings follow rlplat.rollout.worker on CPU:
# in-process engine, chunked prefill off, KV cache space from the environment.
ENGINE_SCRIPT = textwrap.dedent("""
    import json, sys
    from vllm import LLM, SamplingParams
    from vllm.model_executor.models.nemotron_nas import _ffn_mult_to_intermediate_size

    model_dir, prompts_json, new_tokens, out_path = sys.argv[1:5]
    prompts = json.loads(prompts_json)
    llm = LLM(model=model_dir, dtype="float32", enforce_eager=True, max_model_len=256,
              gpu_memory_utilization=0.2, trust_remote_code=True, enable_chunked_prefill=False,
              max_num_batched_tokens=256 * 16, seed=0)
    params = SamplingParams(temperature=0.0, max_tokens=int(new_tokens), ignore_eos=True, logprobs=0)
    outs = llm.generate([{"prompt_token_ids": ids} for ids in prompts], params)
    tokens = [list(o.outputs[0].token_ids) for o in outs]
    logprobs = [[step[t].logprob for step, t in zip(o.outputs[0].logprobs, toks)] for o, toks in zip(outs, tokens)]
    widths = {f"{h},{m}": _ffn_mult_to_intermediate_size(m, h)
              for h, m in [(128, 1.0), (128, 5.25), (4096, 5.25), (8192, 1.3), (16384, 1.95), (3072, 2.0 / 0.75)]}
    with open(out_path, "w") as f:
        json.dump({"tokens": tokens, "logprobs": logprobs, "widths": widths}, f)
""")


def _engine_env() -> dict[str, str]:
    """The environment a RolloutWorker gives its engine on CPU (one in-process engine), offline."""
    env = dict(os.environ)
    spec = EngineSpec("", "float32", "cpu", RolloutConfig(), 0, )
    env.update({key: value for key, value in engine_env(spec).items() if value is not None})
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    return env


def test_vllm_greedy_equals_module(decilm_child: tuple[Path, HeteroLlamaForCausalLM], tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    path, model = decilm_child
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    prompts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    out_path = tmp_path / "engine.json"
    proc = subprocess.run([sys.executable, "-c", ENGINE_SCRIPT, str(path), json.dumps(prompts),
                           str(NEW_TOKENS), str(out_path)],
                          env=_engine_env(), capture_output=True, text=True, timeout=840)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    engine = json.loads(out_path.read_text())

    for ids, tokens, logprobs in zip(prompts, engine["tokens"], engine["logprobs"]):
        expected = greedy_decode(model, ids, NEW_TOKENS)
        assert tokens == expected
        with torch.no_grad():
            full = torch.tensor([ids + expected])
            ours = torch.log_softmax(model(full).logits[0, len(ids) - 1:-1].double(), dim=-1)
        ours_lp = ours.gather(1, torch.tensor(expected)[:, None])[:, 0]
        assert torch.allclose(ours_lp, torch.tensor(logprobs, dtype=torch.float64), atol=1e-3)

    for key, width in engine["widths"].items():
        hidden, mult = key.split(",")
        assert ffn_width(int(hidden), float(mult)) == width, key
