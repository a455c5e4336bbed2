"""Toggle compliance of a model (LN §4): does it think when told "on" and not when told "off"?

After supervised training the stage's output model is loaded into vLLM engines, which answer each
held-out prompt greedily in both modes. ``toggle/on_compliance`` is the share of "on" answers with
exactly one well-formed think block before the answer; ``toggle/off_compliance`` the share of "off"
answers with no think tag (``rlplat.data.sft.think_blocks_ok``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from rlplat.config.schema import Config
from rlplat.data.sft import SFTExample, Toggle, think_blocks_ok, to_train_sequence
from rlplat.runtime.stage_actors import StageActors
from rlplat.types import GenerationRequest


def compliance(answers: Sequence[tuple[Toggle, str]]) -> dict[str, float]:
    """``toggle/{on,off}_compliance`` of ``(mode, answer)`` pairs (a mode without answers is left out)."""
    out: dict[str, float] = {}
    for mode in ("on", "off"):
        mine = [text for m, text in answers if m == mode]
        if mine:
            out[f"toggle/{mode}_compliance"] = sum(think_blocks_ok(t, mode) for t in mine) / len(mine)
    return out


def measure_toggle(cfg: Config, model_path: str, examples: Sequence[SFTExample]) -> dict[str, float]:
    """Greedy answers of the model at ``model_path`` to every example's prompt, in the example's
    mode, scored by :func:`compliance`."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    requests = [GenerationRequest(f"toggle:{i}", to_train_sequence(ex, tokenizer).prompt_ids, i)
                for i, ex in enumerate(examples)]
    greedy = replace(cfg.rollout.sampling, temperature=0.0)
    with StageActors(cfg, model_path, cfg.sft.lr, learners=False, scorer=False) as actors:
        samples = actors.rollout_group.generate(requests, 1, greedy, cfg.timeouts.generate_s)
    return compliance([(ex.reasoning, tokenizer.decode(list(s[0].token_ids), skip_special_tokens=True))
                       for ex, s in zip(examples, samples) if s is not None])
