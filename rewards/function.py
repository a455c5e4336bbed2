"""Adapter that turns a user's plain function into a ``Reward``.

A user reward is ``fn(inp: RewardInput, **kwargs) -> float | RewardOutput``, optionally ``async``.
It may raise: the error is recorded in ``RewardOutput.error`` and scored by the ``on_error`` policy.
A returned float must be finite; ``correct`` is derived from it with ``correct_threshold``.
"""

from __future__ import annotations

import inspect
import math
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from rewards.base import OnError, Reward, RewardError, RewardInput, RewardOutput, clean_input

RewardFn = Callable[..., Any]
T = TypeVar("T")

# Options of a function reward that configure the adapter; every other option goes to the function.
FUNCTION_OPTIONS = ("on_error", "correct_threshold", "timeout_s")


class FunctionReward(Reward):
    """A reward backed by a user function.

    Args:
        fn: ``fn(inp, **kwargs)`` returning a float or a ``RewardOutput``; may be ``async def``.
        name: Name used in logs and in the combination's ``details``.
        on_error: Policy when ``fn`` raises or returns something invalid.
        correct_threshold: A float result counts as ``correct`` when ``score >= correct_threshold``.
        timeout_s: Deadline of an ``async`` reward (sync rewards are bounded by the pool's timeout).
        **kwargs: Passed to ``fn`` on every call (per-component options from the config).
    """

    def __init__(
        self,
        fn: RewardFn,
        *,
        name: str | None = None,
        on_error: OnError = "zero",
        correct_threshold: float = 1.0,
        timeout_s: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(on_error=on_error)
        if not callable(fn):
            raise RewardError(f"reward {name!r} is not callable: {fn!r}")
        self.fn = fn
        self.name = name or str(getattr(fn, "__name__", "reward"))
        self.correct_threshold = float(correct_threshold)
        self.timeout_s = timeout_s
        self.kwargs = kwargs

    def _score(self, inp: RewardInput) -> RewardOutput:
        result = self.fn(inp, **self.kwargs)
        if inspect.isawaitable(result):
            import asyncio

            try:
                result = _run_coroutine(_with_timeout(result, self.timeout_s))
            except (TimeoutError, asyncio.TimeoutError) as exc:  # distinct types before 3.11
                return self.failure(exc, timed_out=True)
        return self._to_output(result)

    def score_batch(self, inps: Sequence[RewardInput]) -> list[RewardOutput]:
        """Async rewards of a batch run concurrently on one event loop; sync ones in order."""
        if not inspect.iscoroutinefunction(self.fn):
            return super().score_batch(inps)
        return _run_coroutine(self._score_all_async(list(inps)))

    async def _score_all_async(self, inps: list[RewardInput]) -> list[RewardOutput]:
        import asyncio

        return list(await asyncio.gather(*(self._score_one_async(inp) for inp in inps)))

    async def _score_one_async(self, inp: RewardInput) -> RewardOutput:
        import asyncio

        try:
            result = await _with_timeout(self.fn(clean_input(inp), **self.kwargs), self.timeout_s)
            return self._to_output(result)
        except asyncio.TimeoutError as exc:
            return self.failure(exc, timed_out=True)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - user code may raise anything
            return self.failure(exc)

    def _to_output(self, result: Any) -> RewardOutput:
        """Validate what the user function returned (bool counts as a float)."""
        if isinstance(result, RewardOutput):
            if not math.isfinite(float(result.score)):
                raise ValueError(f"reward {self.name} returned a non-finite score {result.score!r}")
            return result
        if isinstance(result, (int, float)):
            value = float(result)
            if not math.isfinite(value):
                raise ValueError(f"reward {self.name} returned a non-finite score {value!r}")
            return RewardOutput(score=value, correct=value >= self.correct_threshold)
        raise TypeError(f"reward {self.name} returned {type(result).__name__}, expected float or RewardOutput")


async def _with_timeout(awaitable: Awaitable[T], timeout_s: float | None) -> T:
    import asyncio

    if timeout_s is None:
        return await awaitable
    return await asyncio.wait_for(awaitable, timeout_s)


def _run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even if this thread already runs a loop."""
    import asyncio  # lazy: asyncio costs ~15 ms, and most rewards are sync
    import concurrent.futures

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called from inside a running loop (a notebook, an async harness): asyncio.run would fail, so
    # the coroutine gets its own loop on a helper thread.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="reward-async") as ex:
        return ex.submit(asyncio.run, coro).result()


def is_main_thread() -> bool:
    """Whether signal-based timeouts (math-verify's) can be used here."""
    return threading.current_thread() is threading.main_thread()
