"""The reasoning toggle measured (LN §4): does the model think when told "on", not when told "off",
and how often is it right in each mode?

Held-out prompts are answered greedily by the vLLM engines in both modes (after SFT: the held-out
rows, each in its own mode; after GRPO: every held-out evaluation prompt in both modes):

* ``toggle/on_compliance``: share of "on" answers with exactly one well-formed think block before
  the answer; ``toggle/off_compliance``: share of "off" answers with no think tag
  (``rlplat.data.sft.think_blocks_ok``);
* ``toggle/on_pass_rate`` / ``toggle/off_pass_rate``: share judged correct by the run's accuracy
  reward (the scorer, as in training) against the prompt's reference (for SFT rows: the answer of
  the reference response, after its think block).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from rlplat.config.schema import Config
from rlplat.data.chat import THINKING_OFF, THINKING_ON, build_messages, encode, render_prompt, system_prompt
from rlplat.data.sft import SFTExample, Toggle, final_answer, render_sft_prompt, think_blocks_ok
from rlplat.runtime.evaluation import EVAL_TALLY
from rlplat.runtime.protocols import Rollouts, Scoring
from rlplat.runtime.stage_actors import StageActors
from rlplat.types import GenerationRequest, PromptItem


@dataclass(frozen=True)
class ToggleProbe:
    """One prompt rendered in one mode; ``item.reference`` is what its answer is judged against."""

    mode: Toggle
    item: PromptItem


def compliance(answers: Sequence[tuple[Toggle, str]]) -> dict[str, float]:
    """``toggle/{on,off}_compliance`` of ``(mode, answer)`` pairs (a mode without answers is left out)."""
    out: dict[str, float] = {}
    for mode in ("on", "off"):
        mine = [text for m, text in answers if m == mode]
        if mine:
            out[f"toggle/{mode}_compliance"] = sum(think_blocks_ok(t, mode) for t in mine) / len(mine)
    return out


def sft_probes(examples: Sequence[SFTExample], tokenizer: Any) -> list[ToggleProbe]:
    """Held-out SFT rows as probes, each in its own mode."""
    return [ToggleProbe(ex.reasoning, PromptItem(f"toggle:{i}", i, ex.messages[-1][1], render_sft_prompt(ex, tokenizer),
                                                 final_answer(ex.output), metadata={"thinking": ex.reasoning}))
            for i, ex in enumerate(examples)]


def both_modes(items: Sequence[PromptItem], tokenizer: Any) -> list[ToggleProbe]:
    """Each prompt rendered with "detailed thinking on" and with "off" (its own system prompt,
    less any toggle line, follows the toggle)."""
    probes = []
    for item in items:
        own = "\n".join(line for line in (item.system or "").splitlines() if line not in (THINKING_ON, THINKING_OFF))
        for mode in ("on", "off"):
            system = system_prompt(mode, own or None)
            text = render_prompt(build_messages(system, item.question), tokenizer)
            probes.append(ToggleProbe(mode, replace(item, uid=f"{item.uid}:{mode}", text=text, system=system,
                                                    metadata={**item.metadata, "thinking": mode})))
    return probes


def toggle_metrics(cfg: Config, rollouts: Rollouts, scorer: Scoring, probes: Sequence[ToggleProbe],
                   tokenizer: Any) -> dict[str, float]:
    """Compliance and pass rate per mode of the engines' greedy answers to ``probes``."""
    requests = [GenerationRequest(p.item.uid, encode(tokenizer, p.item.text), i) for i, p in enumerate(probes)]
    greedy = replace(cfg.rollout.sampling, temperature=0.0)
    answers = rollouts.generate(requests, 1, greedy).samples
    # A prompt dropped for crashing engines has no answer.
    kept = {i: s for i, s in enumerate(answers) if s is not None}
    out = compliance([(probes[i].mode, s[0].text) for i, s in kept.items()])
    scored = scorer.score([probes[i].item for i in kept], [requests[i] for i in kept], list(kept.values()),
                          tally=EVAL_TALLY)
    scorer.stats_and_reset(EVAL_TALLY)  # an evaluation's counts are no training step's
    for mode in ("on", "off"):
        mine = [g.samples[0].correct for i, g in zip(kept, scored, strict=True) if probes[i].mode == mode]
        if mine:
            out[f"toggle/{mode}_pass_rate"] = sum(mine) / len(mine)
    return out


def measure_toggle(cfg: Config, model_path: str, examples: Sequence[SFTExample], actors: StageActors) -> dict[str, float]:
    """:func:`toggle_metrics` of the model at ``model_path`` on held-out SFT rows, served by
    ``actors`` (engines and a reward scorer started for that model)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    return toggle_metrics(cfg, actors.rollout_group, actors.reward_scorer, sft_probes(examples, tokenizer), tokenizer)
