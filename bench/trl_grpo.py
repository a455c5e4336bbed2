"""TRL's ``GRPOTrainer`` on rlplat's built-in task, timed per phase: the peer side of ``bench_vs_trl.py``.

Runs inside the separate TRL virtual environment that ``bench_vs_trl.py`` creates (TRL is not one
of the project's dependencies), and imports nothing from ``rlplat``: the prompts come as a JSON-lines
file of chat messages and reference answers written by the driver, and the reward is the project's
own ``rewards.math.MathReward`` (the ``rewards`` package is standalone), so both sides score the
same way. Plain ``transformers`` generation, fp32, one process.

One JSON line per optimizer step goes to ``--out``: ``step_s`` (callback to callback),
``generation_s`` (``GRPOTrainer._generate``), ``reward_s`` (``_calculate_rewards``), ``rollout_s``
(``_generate_and_score_completions``: generation, reward, advantages), ``train_s`` (the step minus
the rollout: forward, backward, optimizer), ``tokens`` (completion tokens generated) and
``mean_length``.

Usage (normally called by ``bench_vs_trl.py``)::

    TRL_VENV/bin/python bench/trl_grpo.py --model DIR --prompts prompts.jsonl --steps 20 \
        --max-new-tokens 32 --out trl.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args() -> argparse.Namespace:
    """Command-line arguments (the batch arithmetic mirrors rlplat's ``grpo.*`` fields)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--prompts", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--prompts-per-step", type=int, default=8)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def math_reward() -> Any:
    """A TRL reward function scoring completions with rlplat's math verifier."""
    from rewards.base import RewardInput
    from rewards.math import MathReward

    verifier = MathReward()
    verifier.warmup()

    def accuracy(prompts: list[Any], completions: list[Any], answer: list[str], **_: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [verifier.score(RewardInput(prompt="", completion=t, reference=a)).score
                for t, a in zip(texts, answer, strict=True)]

    return accuracy


def timed_trainer_class() -> type:
    """``GRPOTrainer`` with its generation, reward and rollout methods timed into ``self.phase``."""
    from trl import GRPOTrainer

    class TimedGRPOTrainer(GRPOTrainer):  # TRL is untyped (an Any base class)
        phase: dict[str, float]

        def _timed(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.phase[name] = self.phase.get(name, 0.0) + time.perf_counter() - start

        def _generate(self, prompts: list[Any]) -> Any:
            return self._timed("generation_s", super()._generate, prompts)

        def _calculate_rewards(self, *args: Any, **kwargs: Any) -> Any:
            return self._timed("reward_s", super()._calculate_rewards, *args, **kwargs)

        def _generate_and_score_completions(self, *args: Any, **kwargs: Any) -> Any:
            out = self._timed("rollout_s", super()._generate_and_score_completions, *args, **kwargs)
            mask = out["completion_mask"]
            self.phase["tokens"] = float(mask.sum())
            self.phase["mean_length"] = float(mask.sum(dim=1).float().mean())
            return out

    return TimedGRPOTrainer


def step_logger(trainer: Any, out: Path) -> Any:
    """A callback writing one line per optimizer step to ``out`` from ``trainer.phase``."""
    from transformers import TrainerCallback

    class StepLog(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            trainer.phase = {}
            self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            step_s = time.perf_counter() - self.start
            line = {"step": state.global_step, "step_s": step_s, **trainer.phase,
                    "train_s": step_s - trainer.phase.get("rollout_s", 0.0)}
            with open(out, "a") as f:
                f.write(json.dumps(line) + "\n")

    return StepLog()


def main() -> None:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    args.out.unlink(missing_ok=True)
    dataset = load_dataset("json", data_files=str(args.prompts), split="train")
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    batch = args.prompts_per_step * args.samples
    config = GRPOConfig(
        output_dir=str(args.out.parent / "trl_out"), use_cpu=True, bf16=False, fp16=False, seed=args.seed,
        per_device_train_batch_size=batch, gradient_accumulation_steps=1, num_generations=args.samples,
        max_completion_length=args.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
        learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=1.0,
        beta=0.0, epsilon=0.2, epsilon_high=0.28, loss_type="dapo", num_iterations=1,
        max_steps=args.steps, logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = timed_trainer_class()(model=model, processing_class=tokenizer, reward_funcs=[math_reward()],
                                     args=config, train_dataset=dataset)
    trainer.phase = {}
    trainer.add_callback(step_logger(trainer, args.out))
    trainer.train()


if __name__ == "__main__":
    main()
