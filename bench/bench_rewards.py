"""Reward throughput and tail latency.

Measures, on this machine (medians of ``--repeats`` runs; worker start-up excluded and reported):

1. ``math`` throughput: serial math-verify (``verify(parse(gold), parse(completion))`` in one
   process, the usual baseline) vs ``get_reward("math").score_batch`` in one process vs
   ``RewardPool("math", num_workers=W)``. Every sample is distinct (no cache hits).
2. Tail latency under a timeout: the same math batch with 1% of samples hanging inside C code (a
   reward no signal can interrupt), ``timeout_s`` bounding them: p50/p99/max latency and throughput.
3. ``code`` throughput through the sandbox (MBPP-style asserts), pool of W workers.

Usage::

    python bench/bench_rewards.py                     # full run (about 2-3 minutes on 2 cores)
    python bench/bench_rewards.py --samples 400 --repeats 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rewards import RewardInput, RewardPool, get_reward, register_reward


@register_reward("bench_c_hang")
def c_hang(inp: RewardInput) -> float:
    """0.0, except for completions marked HANG: a C-level loop no signal handler can interrupt."""
    if "HANG" in inp.completion:
        return float(sum(range(10**13)))
    return 0.0


def math_samples(n: int, seed: int = 0) -> list[RewardInput]:
    """Distinct math completions over several answer kinds, about half of them correct."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(1, 999), rng.randint(2, 97)
        kind = i % 6
        if kind == 0:
            gold, good = f"\\frac{{{a}}}{{{b}}}", f"{float(Fraction(a, b)):.6f}"
        elif kind == 1:
            gold, good = f"{a}", f"{a}.0"
        elif kind == 2:
            gold, good = f"[{a}, {a + b})", f"[{a},{a + b})"
        elif kind == 3:
            gold, good = f"{a}x^2 + {b}x", f"x({a}x + {b})"
        elif kind == 4:
            gold, good = f"\\{{{a}, {b}\\}}", f"\\{{{b}, {a}\\}}"
        else:
            gold, good = f"{a}\\%", f"{a}%"
        answer = good if rng.random() < 0.5 else good.replace(str(a), str(a + 1), 1)
        text = f"<think>Let me compute step {i}: {a} and {b}.</think>\nThe final answer is $\\boxed{{{answer}}}$."
        out.append(RewardInput(prompt=f"Problem {i}", completion=text, reference=gold))
    return out


def serial_math_verify(samples: list[RewardInput]) -> list[bool]:
    from math_verify import parse, verify

    return [bool(verify(parse(f"${s.reference}$"), parse(s.completion))) for s in samples]


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_math(n: int, repeats: int, workers: int) -> dict[str, Any]:
    from rewards.math import _parse

    samples = math_samples(n)
    serial_math_verify(samples[:20])  # import and warm math-verify in this process
    base_s, base_ok = timed(lambda: serial_math_verify(samples), repeats)
    reward = get_reward("math")

    def in_process() -> list[bool]:
        _parse.cache_clear()  # no cache hits from the previous repeat
        return [o.correct for o in reward.score_batch(samples)]

    ours_s, ours_ok = timed(in_process, repeats)
    start = time.perf_counter()
    with RewardPool("math", num_workers=workers, timeout_s=10.0) as pool:
        startup = time.perf_counter() - start
        pool_times = []
        for r in range(repeats):
            batch = math_samples(n, seed=r + 1)  # fresh strings: the workers' caches cannot help
            t = time.perf_counter()
            outs = pool.score_batch(batch)
            pool_times.append(time.perf_counter() - t)
        stats = pool.stats_and_reset()
    pool_s = statistics.median(pool_times)
    agree = sum(a == b for a, b in zip(base_ok, ours_ok)) / n
    return {
        "samples": n, "workers": workers,
        "serial_math_verify_sps": n / base_s, "in_process_sps": n / ours_s, "pool_sps": n / pool_s,
        "pool_vs_serial_ratio": base_s / pool_s, "pool_startup_s": startup,
        "pool_latency_p50_s": stats["reward/latency_p50_s"], "pool_latency_p99_s": stats["reward/latency_p99_s"],
        "accuracy_agreement_with_math_verify": agree, "pool_correct_rate": sum(o.correct for o in outs) / n,
    }


def bench_timeouts(n: int, repeats: int, workers: int, timeout_s: float) -> dict[str, Any]:
    config = {"components": {"math": 1.0, "bench_c_hang": 0.0}, "modules": ["bench_rewards"]}
    runs = []
    with RewardPool(config, num_workers=workers, timeout_s=timeout_s) as pool:
        for r in range(repeats):
            batch = math_samples(n, seed=100 + r)
            for i in range(0, n, 100):  # 1% hang
                batch[i] = RewardInput(batch[i].prompt, batch[i].completion + " HANG", batch[i].reference)
            t = time.perf_counter()
            outs = pool.score_batch(batch)
            wall = time.perf_counter() - t
            stats = pool.stats_and_reset()
            runs.append((wall, stats, sum(o.timed_out for o in outs)))
    walls = [w for w, _, _ in runs]
    return {
        "samples": n, "hanging": n // 100, "timeout_s": timeout_s, "workers": workers,
        "throughput_sps": n / statistics.median(walls),
        "latency_p50_s": statistics.median(s["reward/latency_p50_s"] for _, s, _ in runs),
        "latency_p99_s": statistics.median(s["reward/latency_p99_s"] for _, s, _ in runs),
        "latency_max_s": statistics.median(s["reward/latency_max_s"] for _, s, _ in runs),
        "timeouts_per_run": statistics.median(t for _, _, t in runs),
        "worker_restarts_per_run": statistics.median(s["reward/worker_restarts"] for _, s, _ in runs),
    }


def bench_code(n: int, repeats: int, workers: int) -> dict[str, Any]:
    tests = ["assert f(1) == 2", "assert f(5) == 10", "assert f(-3) == -6"]
    good, bad = "def f(x):\n    return 2 * x\n", "def f(x):\n    return x + 1\n"
    samples = [RewardInput("", f"```python\n{good if i % 2 else bad}# {i}\n```", tests) for i in range(n)]
    with RewardPool("code", num_workers=workers, timeout_s=30.0) as pool:
        wall, outs = timed(lambda: pool.score_batch(samples), repeats)
        stats = pool.stats_and_reset()
    return {"samples": n, "workers": workers, "pool_sps": n / wall,
            "latency_p50_s": stats["reward/latency_p50_s"], "isolation": outs[0].details.get("code/isolation"),
            "correct_rate": sum(o.correct for o in outs) / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--code-samples", type=int, default=60)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_start": os.getloadavg()},
        "math": bench_math(args.samples, args.repeats, args.workers),
        "timeouts": bench_timeouts(args.samples, args.repeats, args.workers, args.timeout),
        "code": bench_code(args.code_samples, max(1, args.repeats // 2), args.workers),
    }
    result["machine"]["loadavg_end"] = os.getloadavg()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
