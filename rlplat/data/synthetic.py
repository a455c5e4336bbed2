"""Built-in arithmetic task with ``<think>`` traces, for the offline default experiment.

Problems are sums of two integers of 1..``digits`` digits. A worked solution writes the column
additions right to left inside ``<think>...</think>`` and then the answer, so a tiny model can learn
the format in a short supervised pass and still get many sums wrong when it samples at
temperature 1: the headroom GRPO then climbs. Operand lengths vary, which gives the curriculum a
spread of difficulty.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from rlplat.data.chat import THINKING_ON, build_messages, encode, render_prompt
from rlplat.data.sft import SFTExample
from rlplat.types import PromptItem, TrainSequence


@dataclass(frozen=True)
class ArithProblem:
    """``a + b``, with its uid."""

    uid: str
    a: int
    b: int

    @property
    def question(self) -> str:
        """The question text."""
        return f"{self.a}+{self.b}"

    @property
    def answer(self) -> str:
        """The reference answer."""
        return str(self.a + self.b)


def make_problems(count: int, digits: int, seed: int, prefix: str,
                  exclude: frozenset[tuple[int, int]] = frozenset()) -> list[ArithProblem]:
    """``count`` distinct problems (none in ``exclude``), reproducible from ``seed``."""
    rng = random.Random(seed)
    seen: set[tuple[int, int]] = set(exclude)
    out: list[ArithProblem] = []
    capacity = (10 ** digits) ** 2 - len(exclude)
    if count > capacity:
        raise ValueError(f"only {capacity} distinct {digits}-digit sums exist; asked for {count}")
    while len(out) < count:
        a, b = (rng.randrange(10 ** rng.randint(1, digits)) for _ in range(2))
        if (a, b) in seen:
            continue
        seen.add((a, b))
        out.append(ArithProblem(f"{prefix}:{len(out)}", a, b))
    return out


def solution(p: ArithProblem, answer: str | None = None) -> str:
    """Worked solution: column sums with carries inside ``<think>``, then ``answer`` (default: the
    right one)."""
    xs, ys = str(p.a)[::-1], str(p.b)[::-1]
    carry, steps = 0, []
    for i in range(max(len(xs), len(ys))):
        x = int(xs[i]) if i < len(xs) else 0
        y = int(ys[i]) if i < len(ys) else 0
        s = x + y + carry
        steps.append(f"{x}+{y}+{carry}={s}" if carry else f"{x}+{y}={s}")
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


def split_problems(digits: int, num_train: int, num_rl: int,
                   seed: int) -> tuple[list[ArithProblem], list[ArithProblem]]:
    """Disjoint warm-start (supervised) and RL problem sets: RL sees only held-out sums."""
    train = make_problems(num_train, digits, seed, "sft")
    taken = frozenset((p.a, p.b) for p in train)
    rl = make_problems(num_rl, digits, seed + 1, "arith", exclude=taken)
    return train, rl


def to_prompt_items(problems: list[ArithProblem], tokenizer: Any) -> list[PromptItem]:
    """Prompt items with the "detailed thinking on" system prompt (the paper's toggle)."""
    return [PromptItem(uid=p.uid, index=i, question=p.question,
                       text=render_prompt(build_messages(THINKING_ON, p.question), tokenizer),
                       reference=p.answer, system=THINKING_ON, metadata={"thinking": "on"})
            for i, p in enumerate(problems)]


def worked_sequences(problems: list[ArithProblem], solutions: list[str], tokenizer: Any) -> list[TrainSequence]:
    """Supervised sequences: each problem's "detailed thinking on" prompt, then its solution and EOS."""
    eos = tokenizer.eos_token or ""
    return [TrainSequence(encode(tokenizer, it.text), encode(tokenizer, sol + eos), (), 0.0)
            for it, sol in zip(to_prompt_items(problems, tokenizer), solutions)]


def toggle_examples(problems: list[ArithProblem]) -> list[SFTExample]:
    """Paired SFT rows for the reasoning toggle (LN §4): for each problem an "on" row answered with
    the worked solution and an "off" row answered with the bare sum."""
    out = []
    for p in problems:
        out.append(SFTExample((("user", p.question),), solution(p), "on", None))
        out.append(SFTExample((("user", p.question),), p.answer, "off", None))
    return out
