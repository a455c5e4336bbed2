"""The model families users bring (``families.py``: Llama-3, Qwen2, Qwen3, Mistral, Phi-3, each with
a byte-level BPE tokenizer and its own chat template), through every part of rlplat that reads
them: templates and turn ends (no Ray), then the learner, the vLLM engine and the weight sync on
the real components (one engine and one learner rank per family; the DeciLM child is
test_weight_sync's), and the saved model read back as the next run's ``model.path``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from families import FAMILIES, build_family
from ray.util.placement_group import remove_placement_group

from rlplat.algo.batching import split_for_ranks
from rlplat.algo.grpo import rollout_metrics, train_sequences
from rlplat.config.loader import load
from rlplat.config.schema import Config, SamplingConfig
from rlplat.data.chat import THINKING_ON, build_messages, end_of_turn, render_prompt, stop_token_ids
from rlplat.data.sft import SFTExample, to_train_sequences
from rlplat.distributed.cluster import create_placement_group
from rlplat.distributed.placement import cpu_binds, plan_placement
from rlplat.faults import FaultLog
from rlplat.learner.group import LearnerGroup
from rlplat.metrics import read_metrics
from rlplat.models.hf import copy_tokenizer, greedy_decode, load_causal_lm
from rlplat.rollout.group import RolloutGroup
from rlplat.rollout.worker import EngineSpec
from rlplat.runtime.evaluation import HeldOutEval
from rlplat.runtime.ledger import RunRecords
from rlplat.runtime.prompts import load_prompt_sets
from rlplat.runtime.protocols import LoopParts
from rlplat.runtime.scorer import Scorer
from rlplat.runtime.signals import StopRequested
from rlplat.runtime.stage_actors import learner_spec
from rlplat.runtime.weight_sync import WeightSync
from rlplat.stages.base import StageContext
from rlplat.stages.checks import check_model_dir
from rlplat.stages.grpo import GRPOLoop, make_curriculum, run_tag
from rlplat.types import GenerationRequest, PromptItem, ScoredGroup, ScoredSample, TrainSequence

NAMES = sorted(FAMILIES)


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {name: build_family(name, root / name) for name in NAMES}


def _tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@pytest.mark.parametrize("name", NAMES)
def test_the_turn_ends_where_the_family_s_template_says(family_dirs: dict[str, Path], name: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """The end-of-turn token is the template's (not always ``eos_token``); generation stops at it and
    at every EOS of generation_config.json; SFT targets end with it; the toggle's line reaches the
    model through the family's own template (Mistral's refuses a system role: the line opens the
    user turn, with a warning)."""
    family, tok = FAMILIES[name], _tokenizer(family_dirs[name])
    assert end_of_turn(tok) == family.end_of_turn
    gen = json.loads((family_dirs[name] / "generation_config.json").read_text())["eos_token_id"]
    stops = stop_token_ids(tok, gen)
    assert tok.convert_tokens_to_ids(family.end_of_turn) in stops and set(gen) <= set(stops)
    with caplog.at_level(logging.WARNING, logger="rlplat.data.chat"):
        text = render_prompt(build_messages(THINKING_ON, "What is 2 + 3?"), tok)
    assert THINKING_ON in text and text.index(THINKING_ON) < text.index("What is 2 + 3?")
    assert ("refuses a system turn" in caplog.text) == (name == "mistral")
    [seq] = to_train_sequences([SFTExample((("user", "What is 2 + 3?"),), "<think>2+3=5</think>5", "on", None)], tok)
    assert seq.completion_ids[-1] == tok.convert_tokens_to_ids(family.end_of_turn)


PROMPTS_TEXT = ["What is 12 + 30?", "What is 7 + 8?", "What is 100 + 45?"]
# Two GRPO steps of 2 prompts x 4 samples, one optimizer step each, at a large learning rate
# (the session's Ray workers import the reward plugin: tests/conftest.py's ``ray_local``).
RUN = ("cluster.devices_per_node=1", "rollout.max_model_len=128", "rollout.sampling.max_new_tokens=12",
       "learner.lr=0.05", "learner.warmup_steps=0", "learner.reference_model=false", "learner.micro_batch_size=4",
       "grpo.total_steps=2", "grpo.prompts_per_step=2", "grpo.samples_per_prompt=4", "grpo.global_batch=8",
       "checkpoint.every=2", "metrics.tensorboard=false", "progress=false", "reward.num_workers=1",
       # A random model never solves the task: a reward of coin flips gives the groups advantages.
       "reward.components={coin_flip: 1.0}", "reward.modules=[coin_rewards]")


# Families whose learner runs ZeRO-3: built partitioned, read in and saved one tensor at a time
# (rlplat.learner.zero3), a tied head (Qwen2) and fused projections (Phi-3) among them.
ZERO3 = frozenset({"qwen2", "phi3"})


@pytest.fixture(scope="module")
def scorer(ray_local: None) -> Iterator[Scorer]:
    """The reward scorer actor of ``RUN``, shared by the families' runs."""
    handle = Scorer(load(list(RUN))[0].reward).wait_started()
    try:
        yield handle
    finally:
        handle.close()


@pytest.fixture()
def served(request: pytest.FixtureRequest, ray_local: None, family_dirs: dict[str, Path],
           tmp_path: Path) -> Iterator[tuple[Config, LearnerGroup, RolloutGroup]]:
    """One learner rank and one engine on the family's checkpoint, with the config of a run from it."""
    zero = "learner.zero_stage=3" if request.param in ZERO3 else "learner.zero_stage=1"
    cfg, _ = load([f"hydra.run.dir={tmp_path / 'run'}", f"model.path={family_dirs[request.param]}", zero, *RUN])
    path = cfg.model.path
    assert path is not None
    plan = plan_placement(cfg.cluster, cfg.rollout)
    pg = create_placement_group(plan, 60)
    groups: list[LearnerGroup | RolloutGroup] = []
    try:
        learners = LearnerGroup(learner_spec(cfg, path, cfg.learner.lr), plan, pg, cfg.timeouts)
        groups.append(learners)
        engines = RolloutGroup(EngineSpec(path, "float32", "cpu", cfg.rollout, seed=0), plan, pg,
                               cpu_binds(plan, os.cpu_count() or 1, 1), cfg.timeouts, cfg.faults, FaultLog())
        groups.append(engines)
        yield cfg, learners.wait_started(), engines.wait_started()
    finally:
        for group in groups:
            group.shutdown()
        remove_placement_group(pg)


@pytest.mark.slow
@pytest.mark.parametrize("served", NAMES, indirect=True)
def test_the_learner_the_engine_and_the_weight_sync_read_the_family(served: tuple[Config, LearnerGroup, RolloutGroup],
                                                                   scorer: Scorer, tmp_path: Path) -> None:
    """vLLM serves the checkpoint the learner loaded (greedy outputs equal); after a large-lr update
    and a sync they still are (an exact sync: every tensor name and layout mapped, tied and fused
    weights included); two GRPO steps of the real loop train on what the engines sampled with the
    learner's own log-probs; an FP8 sync loads; generation stops at the template's end of turn, which
    the sample keeps; the saved model is a complete ``model.path`` for the next run."""
    cfg, learners, engines = served
    path = Path(str(cfg.model.path))
    tok = _tokenizer(path)
    prompts = [list(tok(render_prompt(build_messages(THINKING_ON, q), tok),
                        add_special_tokens=False)["input_ids"]) for q in PROMPTS_TEXT]
    before = engines.greedy(prompts, 12)
    assert before == learners.greedy(prompts, 12)
    seqs = [TrainSequence(tuple(p), tuple(range(60, 72)), tuple([-4.0] * 12), adv) for p in prompts for adv in (1.0, -1.0)]
    learners.train_step(split_for_ranks(seqs + seqs[:2], 1))
    report = WeightSync(cfg.sync, learners, engines, tag=f"fam{path.name}").sync(0)  # a fresh run's version
    after = engines.greedy(prompts, 12)
    assert after == learners.greedy(prompts, 12) and after != before

    lines = _grpo_steps(cfg, learners, engines, scorer, tok)
    assert [r["step"] for r in lines] == [1, 2] and lines[-1]["weights/version"] == 2
    # Each step trained (a gradient) on what the engine sampled with the weights the learner held
    # (the second after the first's update and sync): the engine's log-probs are the learner's.
    assert all(r["grad_norm"] > 0 and r["weights/staleness"] == 0 and r["mismatch/kl"] < 1e-9 for r in lines), lines

    fp8 = WeightSync(cfg.sync, learners, engines, tag=f"fam{path.name}8", fp8=True).sync(3)
    assert 0 < fp8.nbytes < report.nbytes and len(engines.greedy(prompts, 4)[0]) == 4

    _stops_at_the_end_of_turn(learners, engines, tok, prompts, WeightSync(cfg.sync, learners, engines, tag=f"fam{path.name}"))

    out = tmp_path / "final_model"
    learners.save_hf(str(out))
    copy_tokenizer(path, out)  # as every stage writes its model
    check_model_dir("model.path", str(out), "")  # weights, config and a loadable tokenizer
    assert end_of_turn(_tokenizer(out)) == FAMILIES[path.name].end_of_turn
    saved = json.loads((out / "generation_config.json").read_text())["eos_token_id"]
    assert saved == json.loads((path / "generation_config.json").read_text())["eos_token_id"]
    assert _greedy(out, prompts, 6) == learners.greedy(prompts, 6)  # the trained weights, read back


def _grpo_steps(cfg: Config, learners: LearnerGroup, engines: RolloutGroup, scorer: Scorer, tok: Any) -> list[dict[str, Any]]:
    """Run ``cfg``'s GRPO steps on the synthetic prompts rendered by the family's template, through
    the stage's own loop over these actors; returns the metrics lines."""
    run_dir = Path(cfg.run_dir)
    train, held_out = load_prompt_sets(cfg, tok)
    parts = LoopParts(learners, engines, scorer, WeightSync(cfg.sync, learners, engines, tag=run_tag(run_dir)))
    ctx = StageContext(cfg, run_dir, model_path=str(cfg.model.path), resume=False)
    with StopRequested() as stop:
        GRPOLoop(ctx, parts, train, HeldOutEval(cfg, held_out), make_curriculum(cfg, train.uids, None), stop,
                 RunRecords.restored(run_dir, False)).run()
    return read_metrics(run_dir / "metrics.jsonl")


def _stops_at_the_end_of_turn(learners: LearnerGroup, engines: RolloutGroup, tok: Any, prompts: list[list[int]],
                              weight_sync: WeightSync) -> None:
    """Teach the model to end its turn at once (SFT at a large learning rate on the end-of-turn
    token alone), then sample: a sample that stopped ends with the end-of-turn token, its log-prob
    included, and trains on it. Qwen2's generation_config does not list its end of turn
    (``<|im_end|>``) as an EOS, so only rlplat's stop ids end its turns."""
    eot = tok.convert_tokens_to_ids(end_of_turn(tok))
    row = [TrainSequence(tuple(p), (eot,), (), 0.0) for p in prompts]
    losses = [learners.sft_step(split_for_ranks(row + row[:1], 1), lr=0.05)[0].micro[0].values["loss/sft"]
              for _ in range(3)]
    assert losses[-1] < losses[0]
    weight_sync.sync(4)
    requests = [GenerationRequest(f"p{i}", tuple(p), seed=i) for i, p in enumerate(prompts)]
    groups = engines.generate(requests, 4, SamplingConfig(temperature=1.0, max_new_tokens=8)).samples
    samples = [s for g in groups if g for s in g]
    stopped = [s for s in samples if s.finish_reason == "stop"]
    assert len(stopped) >= len(samples) // 2, [s.token_ids for s in samples]
    assert all(s.token_ids[-1] == eot and len(s.logprobs) == len(s.token_ids) for s in stopped)
    scored = [ScoredGroup(PromptItem(r.uid, i, "", "", ""), r.prompt_token_ids,
                          tuple(ScoredSample(s, 0.0, False) for s in g or ()))
              for i, (r, g) in enumerate(zip(requests, groups, strict=True))]
    trained = train_sequences(scored, [[0.0] * len(g.samples) for g in scored])
    assert [q.completion_ids[-1] for q in trained].count(eot) == len(stopped)
    metrics = rollout_metrics(scored, 4)
    assert metrics["response/truncated_frac"] == 1 - len(stopped) / len(samples)
    assert metrics["tokens/generated"] == sum(len(q.completion_ids) for q in trained)


def _greedy(model_dir: Path, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
    """Argmax continuations of ``prompts`` by the model a next run's learner reads from ``model_dir``."""
    import torch

    model = load_causal_lm(model_dir, torch.float32).eval()
    return [greedy_decode(model, p, new_tokens) for p in prompts]
