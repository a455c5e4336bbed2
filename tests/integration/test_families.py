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
from rlplat.config.schema import ClusterConfig, Config, LearnerConfig, RolloutConfig, SyncConfig
from rlplat.data.chat import THINKING_ON, build_messages, end_of_turn, render_prompt, stop_token_ids
from rlplat.data.sft import SFTExample, to_train_sequences
from rlplat.distributed.cluster import create_placement_group
from rlplat.distributed.placement import cpu_binds, plan_placement
from rlplat.faults import FaultLog
from rlplat.learner.group import LearnerGroup
from rlplat.models.hf import copy_tokenizer
from rlplat.rollout.group import RolloutGroup
from rlplat.rollout.worker import EngineSpec
from rlplat.runtime.stage_actors import learner_spec
from rlplat.runtime.weight_sync import WeightSync
from rlplat.stages.checks import check_model_dir
from rlplat.types import TrainSequence

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


@pytest.fixture()
def served(request: pytest.FixtureRequest, ray_local: None,
           family_dirs: dict[str, Path]) -> Iterator[tuple[Path, LearnerGroup, RolloutGroup]]:
    """One learner rank and one engine on the family's checkpoint."""
    path = family_dirs[request.param]
    cfg = Config(cluster=ClusterConfig(devices_per_node=1), rollout=RolloutConfig(max_model_len=128),
                 learner=LearnerConfig(lr=0.05, warmup_steps=0, reference_model=False, micro_batch_size=4))
    plan = plan_placement(cfg.cluster, cfg.rollout)
    pg = create_placement_group(plan, 60)
    groups: list[LearnerGroup | RolloutGroup] = []
    try:
        learners = LearnerGroup(learner_spec(cfg, str(path), cfg.learner.lr), plan, pg, cfg.timeouts)
        groups.append(learners)
        engines = RolloutGroup(EngineSpec(str(path), "float32", "cpu", cfg.rollout, seed=0), plan, pg,
                               cpu_binds(plan, os.cpu_count() or 1, 1), cfg.timeouts, cfg.faults, FaultLog())
        groups.append(engines)
        yield path, learners.wait_started(), engines.wait_started()
    finally:
        for group in groups:
            group.shutdown()
        remove_placement_group(pg)


@pytest.mark.slow
@pytest.mark.parametrize("served", NAMES, indirect=True)
def test_the_learner_the_engine_and_the_weight_sync_read_the_family(served: tuple[Path, LearnerGroup, RolloutGroup],
                                                                   tmp_path: Path) -> None:
    """vLLM serves the checkpoint the learner loaded (greedy outputs equal); after a large-lr GRPO
    update and a sync they still are (an exact sync: every tensor name and layout mapped, tied and
    fused weights included); an FP8 sync loads; an SFT step trains; the saved model is a complete
    ``model.path`` for the next run."""
    path, learners, engines = served
    tok = _tokenizer(path)
    prompts = [list(tok(render_prompt(build_messages(THINKING_ON, q), tok),
                        add_special_tokens=False)["input_ids"]) for q in PROMPTS_TEXT]
    before = engines.greedy(prompts, 12)
    assert before == learners.greedy(prompts, 12)
    seqs = [TrainSequence(tuple(p), tuple(range(60, 72)), tuple([-4.0] * 12), adv) for p in prompts for adv in (1.0, -1.0)]
    learners.train_step(split_for_ranks(seqs + seqs[:2], 1))
    report = WeightSync(SyncConfig(bucket_mb=1), learners, engines, tag=f"fam{path.name}").sync(1)
    after = engines.greedy(prompts, 12)
    assert after == learners.greedy(prompts, 12) and after != before
    fp8 = WeightSync(SyncConfig(), learners, engines, tag=f"fam{path.name}8", fp8=True).sync(2)
    assert 0 < fp8.nbytes < report.nbytes and len(engines.greedy(prompts, 4)[0]) == 4
    sft = TrainSequence(tuple(prompts[0]), tuple(tok(" 42", add_special_tokens=False)["input_ids"]), (), 0.0)
    stats = learners.sft_step(split_for_ranks([sft] * 4, 1), lr=1e-3)
    assert all(m.values["loss/sft"] > 0 for s in stats for m in s.micro)
    out = tmp_path / "final_model"
    learners.save_hf(str(out))
    copy_tokenizer(path, out)  # as every stage writes its model
    check_model_dir("model.path", str(out), "")  # weights, config and a loadable tokenizer
    assert end_of_turn(_tokenizer(out)) == FAMILIES[path.name].end_of_turn
    saved = json.loads((out / "generation_config.json").read_text())["eos_token_id"]
    assert saved == json.loads((path / "generation_config.json").read_text())["eos_token_id"]
