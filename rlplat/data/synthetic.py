"""Built-in arithmetic tasks with ``<think>`` traces, for the offline experiments.

A worked solution writes the column additions right to left inside ``<think>...</think>`` and then
the answer, so a tiny model can learn the format in a short supervised pass and still get many sums
wrong when it samples at temperature 1: the headroom GRPO then climbs. Two tasks
(``data.synthetic.task``):

* ``sum``: ``a + b``, each operand of 1..``digits`` digits (the default experiment).
* ``spread``: a graded mix for the curriculum. Each problem draws its level, an operand length
  ``d`` in 1..``digits`` and a number of terms ``t`` in 2..``max_terms``, uniformly, then ``t``
  operands of exactly ``d`` digits, so that the easiest level (two one-digit numbers) and the
  hardest (``max_terms`` numbers of ``digits`` digits, carries above 1) are equally common, as far
  as a level has distinct problems (two one-digit numbers make only 100). The
  level is in each prompt's metadata (``digits``, ``terms``, ``difficulty = d - 1 + t - 2``) for
  analysis; the curriculum never sees it, only pass rates.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from rlplat.config.schema import SyntheticTaskConfig
from rlplat.data.chat import THINKING_ON, build_messages, encode, end_of_turn, render_prompt
from rlplat.data.sft import SFTExample
from rlplat.types import PromptItem, TrainSequence


@dataclass(frozen=True)
class ArithProblem:
    """The sum of ``terms``, with its uid."""

    uid: str
    terms: tuple[int, ...]

    @property
    def question(self) -> str:
        """The question text."""
        return "+".join(map(str, self.terms))

    @property
    def answer(self) -> str:
        """The reference answer."""
        return str(sum(self.terms))

    @property
    def level(self) -> dict[str, int]:
        """Its difficulty: the longest operand's digits, the number of terms, and their sum
        ``difficulty`` (0 for two one-digit numbers)."""
        digits = max(len(str(t)) for t in self.terms)
        return {"digits": digits, "terms": len(self.terms), "difficulty": digits - 1 + len(self.terms) - 2}


def make_problems(count: int, task: SyntheticTaskConfig, seed: int, prefix: str,
                  exclude: frozenset[tuple[int, ...]] = frozenset()) -> list[ArithProblem]:
    """``count`` distinct problems of ``task`` (none in ``exclude``), reproducible from ``seed``."""
    rng = random.Random(seed)
    seen: set[tuple[int, ...]] = set(exclude)
    out: list[ArithProblem] = []
    capacity = _capacity(task) - len(exclude)
    if count > capacity:
        raise ValueError(f"only {capacity} distinct problems of this task exist; asked for {count}")
    while len(out) < count:
        terms = _draw(rng, task)
        if terms in seen:
            continue
        seen.add(terms)
        out.append(ArithProblem(f"{prefix}:{len(out)}", terms))
    return out


def _draw(rng: random.Random, task: SyntheticTaskConfig) -> tuple[int, ...]:
    """One problem's operands (see the module docstring for each task's distribution)."""
    if task.task == "sum":
        return tuple(rng.randrange(10 ** rng.randint(1, task.digits)) for _ in range(2))
    digits, terms = rng.randint(1, task.digits), rng.randint(2, task.max_terms)
    low = 0 if digits == 1 else 10 ** (digits - 1)
    return tuple(rng.randrange(low, 10 ** digits) for _ in range(terms))


def _capacity(task: SyntheticTaskConfig) -> int:
    """How many distinct problems ``task`` has (ordered operands)."""
    if task.task == "sum":
        return int((10 ** task.digits) ** 2)
    per_length = [10] + [9 * 10 ** (d - 1) for d in range(2, task.digits + 1)]
    return sum(n ** t for n in per_length for t in range(2, task.max_terms + 1))


def solution(p: ArithProblem, answer: str | None = None) -> str:
    """Worked solution: column sums with carries inside ``<think>``, then ``answer`` (default: the
    right one)."""
    columns = [str(t)[::-1] for t in p.terms]
    carry, steps = 0, []
    for i in range(max(map(len, columns))):
        digits = [int(c[i]) if i < len(c) else 0 for c in columns]
        s = sum(digits) + carry
        steps.append("+".join(map(str, digits + ([carry] if carry else []))) + f"={s}")
        carry = s // 10
    return f"<think>{','.join(steps)}</think>{p.answer if answer is None else answer}"


def teacher_solutions(problems: list[ArithProblem], accuracy: float, seed: int) -> list[str]:
    """Worked solutions of a teacher whose final answer is right with probability ``accuracy``;
    a slip changes one digit of the answer (the reasoning before it stays right)."""
    rng = random.Random(seed + 7919)
    out = []
    for p in problems:
        answer = p.answer
        if rng.random() >= accuracy:
            i = rng.randrange(len(answer))
            wrong = rng.choice([d for d in "0123456789" if d != answer[i] and (i or d != "0" or len(answer) == 1)])
            answer = answer[:i] + wrong + answer[i + 1:]
        out.append(solution(p, answer))
    return out


def split_problems(task: SyntheticTaskConfig, seed: int) -> tuple[list[ArithProblem], list[ArithProblem]]:
    """Disjoint warm-start (supervised, ``num_train``) and RL (``num_rl``) problem sets: RL sees
    only held-out sums."""
    train = make_problems(task.num_train, task, seed, "sft")
    rl = make_problems(task.num_rl, task, seed + 1, "arith", exclude=frozenset(p.terms for p in train))
    return train, rl


def to_prompt_items(problems: list[ArithProblem], tokenizer: Any) -> list[PromptItem]:
    """Prompt items with the "detailed thinking on" system prompt (the paper's toggle); each
    problem's ``level`` is in the metadata."""
    return [PromptItem(uid=p.uid, index=i, question=p.question,
                       text=render_prompt(build_messages(THINKING_ON, p.question), tokenizer),
                       reference=p.answer, system=THINKING_ON, metadata={"thinking": "on", **p.level})
            for i, p in enumerate(problems)]


def worked_sequences(problems: list[ArithProblem], solutions: list[str], tokenizer: Any) -> list[TrainSequence]:
    """Supervised sequences: each problem's "detailed thinking on" prompt, then its solution and the
    token that ends the model's turn (``end_of_turn``)."""
    eos = end_of_turn(tokenizer) or ""
    return [TrainSequence(encode(tokenizer, it.text), encode(tokenizer, sol + eos), (), 0.0)
            for it, sol in zip(to_prompt_items(problems, tokenizer), solutions, strict=True)]


def toggle_examples(problems: list[ArithProblem]) -> list[SFTExample]:
    """Paired SFT rows for the reasoning toggle (LN §4): for each problem an "on" row answered with
    the worked solution and an "off" row answered with the bare sum."""
    out = []
    for p in problems:
        out.append(SFTExample((("user", p.question),), solution(p), "on", None))
        out.append(SFTExample((("user", p.question),), p.answer, "off", None))
    return out
