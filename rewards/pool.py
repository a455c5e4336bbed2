"""A pool of killable worker processes that score samples with deadlines.

Why processes and not threads or futures: a verifier can hang in C code (sympy evaluating
``10^10^10^10``, a regex, a stuck socket) where no signal or future timeout reaches it; the only
bound that always works is killing the process. So each sample runs in a worker the pool owns; a
sample that exceeds ``timeout_s`` scores the failure value with ``timed_out=True``, its worker is
SIGKILLed and replaced, and the rest of that worker's batch is re-queued to other workers. A worker
that dies (segfault, OOM kill, a sandbox escape attempt that hit it) costs only the sample it held.

Only the reward *config* (plain data) crosses to workers, which start from a fork server
preloaded with math-verify (or by ``spawn``): never a fork of the caller, so no inherited threads,
locks or CUDA state. Each worker builds its own reward and warms up before it takes work; forking
from the warm server makes replacing a killed worker take milliseconds, not seconds. Counters and latencies
accumulate per tally (``score_batch(..., tally=...)``, "default" unless named) until ``stats_and_reset(tally)``:
the training loop logs its tally per step, and an evaluation that scores in between counts in a tally of its own.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import multiprocessing.process
import os
import pickle
import resource
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rewards.base import (
    OnError,
    RewardError,
    RewardInput,
    RewardOutput,
    describe_error,
    failure_score,
    validate_on_error,
)
from rewards.combine import build_reward

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is Python 3.11+

logger = logging.getLogger("rewards.pool")
Results = list[RewardOutput | None]  # per input index; None until scored


def _worker_main(conn: multiprocessing.connection.Connection, config: Any, memory_mb: int | None) -> None:
    """Worker loop: build the reward, report ready, then score (idx, input) batches one by one."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    if memory_mb:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, hard))  # MemoryError, not host OOM
    try:
        reward = build_reward(config)
        reward.warmup()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(("init_error", describe_error(exc)))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "stop":
            return
        for idx, inp in msg[1]:
            start = time.perf_counter()
            try:
                out = reward.score(inp)
            except BaseException as exc:  # noqa: BLE001 - only on_error="raise" gets here
                out = RewardOutput(score=0.0, error=describe_error(exc), details={"raised": True})
            conn.send(("done", idx, out, time.perf_counter() - start))


@dataclass(eq=False)  # identity comparison: workers are looked up in lists
class _Worker:
    """Parent-side handle of one worker process."""

    proc: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    spawned_at: float
    ready: bool = False
    assigned: deque[int] = field(default_factory=deque)  # input indices, in the order sent
    started: float = 0.0  # when the sample at the head of ``assigned`` started


DEFAULT_TALLY = "default"


@dataclass
class _Stats:
    samples: int = 0
    timeouts: int = 0
    errors: int = 0
    restarts: int = 0
    latencies: list[float] = field(default_factory=list)
    components: dict[str, list[float]] = field(default_factory=dict)


class RewardPool:
    """Score samples in ``num_workers`` killable processes with a per-sample timeout.

    Args:
        reward_config: What ``build_reward`` accepts, as plain data (it is pickled to workers).
        num_workers: Worker processes (bounded concurrency).
        timeout_s: Per-sample deadline; a sample over it scores the failure value, ``timed_out=True``.
        on_error: Policy for failed samples ("zero", a number, or "raise" to raise ``RewardError``
            after the batch); also the default policy of the reward's components.
        batch_size: Samples sent to a worker per message (fewer round trips; the deadline stays per sample).
        startup_timeout_s: A worker that is not ready by then is replaced.
        mp_context: "forkserver" (default where available) or "spawn".
        worker_memory_mb: Address-space limit of each worker (None: unlimited).
        spare_workers: Started, idle workers that replace a killed one at once (a fresh worker
            needs seconds to import sympy; meanwhile the pool would run one worker short).
        on_latency: Called in this process with each sample's scoring seconds (a timed-out sample:
            its deadline), as the sample is scored.

    Example:
        >>> with RewardPool("math", num_workers=2, timeout_s=10.0) as pool:
        ...     outs = pool.score_batch([RewardInput(prompt="1+1?", completion="\\\\boxed{2}", reference="2")])
    """

    def __init__(
        self,
        reward_config: str | Mapping[str, Any],
        num_workers: int = 2,
        timeout_s: float = 10.0,
        on_error: OnError = "zero",
        *,
        batch_size: int = 4,
        startup_timeout_s: float = 120.0,
        worker_memory_mb: int | None = 4096,
        spare_workers: int = 1,
        mp_context: str | None = None,
        on_latency: Callable[[float], None] | None = None,
    ) -> None:
        if num_workers < 1 or timeout_s <= 0 or batch_size < 1:
            raise RewardError("RewardPool needs num_workers >= 1, timeout_s > 0 and batch_size >= 1")
        self.on_error = validate_on_error(on_error)
        self.config = _with_on_error(reward_config, self.on_error)
        try:
            pickle.dumps(self.config)
        except Exception as exc:
            raise RewardError(f"reward config must be plain, picklable data (it crosses to workers): {exc!r}") from exc
        build_reward(self.config)  # configuration errors surface here, before any process starts
        self.num_workers, self.timeout_s, self.batch_size = num_workers, timeout_s, batch_size
        self.startup_timeout_s, self.worker_memory_mb = startup_timeout_s, worker_memory_mb
        self._ctx = _mp_context(mp_context)
        self._lock = threading.Lock()
        self._tallies: dict[str, _Stats] = {}
        self._stats = self._tally(DEFAULT_TALLY)  # the tally of the batch being scored
        # Called with each sample's verifier seconds as it is scored (a metrics histogram, say).
        self._on_latency = on_latency
        self._closed = False
        self._workers = [self._spawn() for _ in range(num_workers)]
        self._spare_target = max(0, spare_workers)
        self._spares = [self._spawn() for _ in range(self._spare_target)]
        self._wait_all_ready()

    # -- public API -----------------------------------------------------------------------------

    def score(self, inp: RewardInput) -> RewardOutput:
        """Score one sample (see ``score_batch``)."""
        return self.score_batch([inp])[0]

    def score_batch(self, inps: Sequence[RewardInput], *, tally: str = DEFAULT_TALLY) -> list[RewardOutput]:
        """Score samples in parallel; same order; never raises because of model output. What the
        call counts (samples, timeouts, errors, restarts, latencies) goes to ``tally``."""
        with self._lock:
            if self._closed:
                raise RewardError("RewardPool is closed")
            self._stats = self._tally(tally)
            results: Results = [None] * len(inps)
            pending = deque(range(len(inps)))
            while pending or any(w.assigned for w in self._workers):
                self._dispatch(pending, inps)
                self._receive(results, pending, self._wait_timeout())
                self._enforce_deadlines(results, pending)
            outs = [r for r in results if r is not None]
            assert len(outs) == len(inps)
            self._record(outs)
            return outs

    def stats_and_reset(self, tally: str = DEFAULT_TALLY) -> dict[str, float]:
        """``tally``'s counters since its last reset, as flat step metrics (``reward/...``); other
        tallies keep theirs."""
        with self._lock:
            s = self._tallies.pop(tally, _Stats())
            if self._stats is s:
                self._stats = self._tally(DEFAULT_TALLY)
        lat = sorted(s.latencies)
        metrics = {
            "reward/samples": float(s.samples),
            "reward/timeouts": float(s.timeouts),
            "reward/errors": float(s.errors),
            "reward/worker_restarts": float(s.restarts),
            "reward/latency_p50_s": _percentile(lat, 50),
            "reward/latency_p99_s": _percentile(lat, 99),
            "reward/latency_max_s": lat[-1] if lat else 0.0,
        }
        for name, values in s.components.items():
            metrics[f"reward/{name}/mean"] = sum(values) / len(values)
        return metrics

    def close(self) -> None:
        """Stop all workers (killing any that do not stop promptly) and clean up sandbox uids."""
        if self._closed:
            return
        self._closed = True
        everyone = self._workers + self._spares
        for w in everyone:
            try:
                w.conn.send(("stop",))
            except (OSError, ValueError):
                pass
        for w in everyone:
            w.proc.join(timeout=2.0)
            self._kill(w)
        _sweep_sandboxes()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter shutdown, nothing is left to report to
            pass

    # -- scheduling -----------------------------------------------------------------------------

    def _dispatch(self, pending: deque[int], inps: Sequence[RewardInput]) -> None:
        idle = [w for w in self._workers if w.ready and not w.assigned]
        for w in idle:
            if not pending:
                return
            share = max(1, min(self.batch_size, math.ceil(len(pending) / len(idle))))
            chunk = [pending.popleft() for _ in range(min(share, len(pending)))]
            try:
                w.conn.send(("score", [(i, inps[i]) for i in chunk]))
            except (OSError, ValueError):
                pending.extendleft(reversed(chunk))
                self._replace(w)
                continue
            w.assigned.extend(chunk)
            w.started = time.monotonic()

    def _receive(self, results: Results, pending: deque[int], timeout: float) -> None:
        workers = self._workers + self._spares
        by_conn: dict[object, _Worker] = {w.conn: w for w in workers}
        for ready in multiprocessing.connection.wait([w.conn for w in workers], timeout=timeout):
            w = by_conn[ready]
            try:
                while w.conn.poll():
                    self._handle(w, w.conn.recv(), results)
            except (EOFError, OSError):
                self._on_death(w, results, pending)

    def _handle(self, w: _Worker, msg: tuple[Any, ...], results: Results) -> None:
        kind = msg[0]
        if kind == "ready":
            w.ready = True
        elif kind == "init_error":
            self._abort(f"reward worker failed to start: {msg[1]}")
        elif kind == "done":
            _, idx, out, latency = msg
            if w.assigned and w.assigned[0] == idx:
                w.assigned.popleft()
                results[idx] = out
                self._latency(latency)
                w.started = time.monotonic()

    def _tally(self, name: str) -> _Stats:
        return self._tallies.setdefault(name, _Stats())

    def _latency(self, seconds: float) -> None:
        self._stats.latencies.append(seconds)
        if self._on_latency is not None:
            self._on_latency(seconds)

    def _enforce_deadlines(self, results: Results, pending: deque[int]) -> None:
        now = time.monotonic()
        for w in self._workers + self._spares:
            if w.assigned and now - w.started > self.timeout_s:
                idx = w.assigned.popleft()
                results[idx] = self._failed(f"reward timed out after {self.timeout_s}s", timed_out=True)
                self._stats.timeouts += 1
                self._latency(now - w.started)
                pending.extendleft(reversed(w.assigned))
                w.assigned.clear()
                self._replace(w)
            elif not w.ready and now - w.spawned_at > self.startup_timeout_s:
                self._replace(w)

    def _on_death(self, w: _Worker, results: Results, pending: deque[int]) -> None:
        """A worker died: its current sample fails, the rest of its batch is re-queued."""
        if w.assigned:
            idx = w.assigned.popleft()
            code = w.proc.exitcode
            results[idx] = self._failed(f"reward worker died while scoring (exit code {code})")
            self._stats.errors += 1
            pending.extendleft(reversed(w.assigned))
            w.assigned.clear()
        elif not w.ready:
            self._abort(f"reward worker exited during start-up (exit code {w.proc.exitcode})")
        self._replace(w)

    def _wait_timeout(self) -> float:
        now = time.monotonic()
        deadlines = [w.started + self.timeout_s for w in self._workers if w.assigned]
        deadlines += [w.spawned_at + self.startup_timeout_s for w in self._workers + self._spares if not w.ready]
        return min([1.0] + [max(0.0, d - now) + 0.001 for d in deadlines])

    def _failed(self, error: str, *, timed_out: bool = False) -> RewardOutput:
        return RewardOutput(score=failure_score(self.on_error), correct=False, timed_out=timed_out, error=error)

    # -- worker lifecycle -----------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main, args=(child, self.config, self.worker_memory_mb), daemon=True, name="reward-worker"
        )
        proc.start()
        child.close()
        return _Worker(proc=proc, conn=parent, spawned_at=time.monotonic())

    def _replace(self, w: _Worker) -> None:
        """Kill ``w``; an active worker's place goes to a spare (if any), which is then re-spawned."""
        self._kill(w)
        self._stats.restarts += 1
        if w in self._spares:
            self._spares[self._spares.index(w)] = self._spawn()
            return
        successor = self._spares.pop(0) if self._spares else self._spawn()
        self._workers[self._workers.index(w)] = successor
        if successor is not w and len(self._spares) < self._spare_target:
            self._spares.append(self._spawn())

    def _kill(self, w: _Worker) -> None:
        if w.proc.is_alive():
            w.proc.kill()
        w.proc.join(timeout=5.0)
        w.conn.close()

    def _abort(self, message: str) -> None:
        """Kill every worker and raise: the pool cannot work (a config or environment problem)."""
        self._closed = True
        for w in self._workers + self._spares:
            self._kill(w)
        raise RewardError(message)

    def _wait_all_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while not all(w.ready for w in self._workers + self._spares):
            if time.monotonic() > deadline:
                self._abort(f"reward workers not ready after {self.startup_timeout_s}s")
            self._receive([], deque(), 0.5)

    def _record(self, outs: list[RewardOutput]) -> None:
        self._stats.samples += len(outs)
        self._stats.errors += sum(1 for o in outs if o.error and not o.timed_out and "worker died" not in o.error)
        for out in outs:
            for name, value in out.details.items():
                if "/" not in name and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._stats.components.setdefault(name, []).append(float(value))
        if self.on_error == "raise":
            failed = [o for o in outs if o.error]
            if failed:
                raise RewardError(f"{len(failed)} sample(s) failed to score; first: {failed[0].error}")


def _mp_context(name: str | None) -> multiprocessing.context.ForkServerContext | multiprocessing.context.SpawnContext:
    """Default: a fork server preloaded with math-verify (warm, cheap worker replacement), else spawn.

    Both start workers from a clean single-threaded process, never by forking the caller (which
    may hold threads, locks, CUDA or Ray state), so "fork" is refused.
    """
    if name is None:
        name = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    if name == "forkserver":
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["rewards._warm"])
        return ctx
    if name == "spawn":
        return multiprocessing.get_context("spawn")
    raise RewardError(f"RewardPool mp_context must be 'forkserver' or 'spawn', got {name!r}")


def _with_on_error(config: Any, on_error: OnError) -> Any:
    """Make the pool's policy the default of every component (an explicit config value wins)."""
    if isinstance(config, str):
        return {"components": {config: 1.0}, "on_error": on_error}
    if isinstance(config, Mapping) and "components" in config and "on_error" not in config:
        return {**config, "on_error": on_error}
    return config


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def _sweep_sandboxes() -> None:
    """Kill leftovers of sandboxes whose worker was killed mid-run (root only; best effort)."""
    try:
        from rewards.sandbox import sweep_free_slots

        sweep_free_slots()
    except Exception:  # cleanup must not mask the caller's error
        logger.debug("sweeping sandbox uids failed", exc_info=True)
