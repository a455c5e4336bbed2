"""Fault injection specs, the fault log's state, and the per-prompt crash budget (pure)."""

from __future__ import annotations

import pytest

from rlplat.faults import (
    ArmedFaults,
    Chunk,
    FaultInjector,
    FaultLog,
    FaultSpec,
    InjectedFault,
    PromptBudget,
    parse_faults,
)


def test_specs_parse_and_fire_once_per_run() -> None:
    plan = parse_faults(["engine1:freeze@generate:2", "learner0:exit@train:3", "reward:hang@score:2",
                         "driver:sigterm@sync:4", "driver:kill@generate:3", "prompt:exit@arith:17"])
    assert plan.actor_faults[0] == FaultSpec("engine1", "freeze", "generate", 2)
    assert plan.crash_prompts == {"arith:17": "exit"}  # a uid may hold ':'
    fired: list[str] = []
    assert plan.take("engine", "generate", 1, fired) == {}
    assert plan.take("engine", "generate", 2, fired) == {1: "freeze"}
    assert plan.take("engine", "generate", 2, fired) == {}  # fired already (a replaced engine is spared)
    assert plan.take("reward", "score", 2, fired) == {0: "hang"}
    assert plan.take("learner", "train", 3, fired) == {0: "exit"}
    assert plan.take("driver", "generate", 3, fired) == {0: "kill"}
    assert fired == ["engine1:freeze@generate:2", "reward:hang@score:2", "learner0:exit@train:3",
                     "driver:kill@generate:3"]


@pytest.mark.parametrize("bad", ["engine:freeze@generate:2", "engine0:melt@generate:2", "engine0:freeze@dance:2",
                                 "engine0:freeze@generate", "engine0:sigterm@sync:1", "engine0:kill@sync:1",
                                 "driver:exit@sync:1"])
def test_a_malformed_spec_names_itself(bad: str) -> None:
    with pytest.raises(ValueError, match="fault"):
        parse_faults([bad])


def test_the_fault_log_round_trips_through_its_state() -> None:
    log = FaultLog()
    log.begin(3)
    log.rollout_restarts, log.fired = 2, ["engine0:exit@sync:3"]
    log.record("sync", "rollout worker 0", "died", 0.5, "replaced")
    log.dropped_prompts.append("p7")
    restored = FaultLog()
    restored.load_state(log.state())
    assert restored.state() == log.state()
    assert restored.metrics() == {"faults/rollout_restarts": 2.0, "faults/reward_restarts": 0.0,
                                  "faults/dropped_prompts": 1.0, "faults/events": 1.0}
    assert log.history[0]["step"] == 3


def test_a_bad_prompt_is_dropped_and_its_failures_are_not_charged() -> None:
    budget = PromptBudget(retries=1)
    budget.failed(["a", "bad", "c"])  # the chunk fails, then fails again when retried whole
    budget.failed(["a", "bad", "c"])
    assert budget.take_charged() == 0  # undecided: the culprit is not known yet
    budget.succeeded(["a"])
    budget.succeeded(["c"])
    budget.failed(["bad"])  # alone, with its budget spent
    assert budget.drop_if_spent("bad") and budget.dropped == {"bad"}
    assert budget.take_charged() == 0  # all three failures involved the dropped prompt


def test_a_failed_chunk_is_retried_whole_once_then_prompt_by_prompt_until_the_culprit_is_dropped() -> None:
    """What a rollout group sends again as a prompt that kills every engine given it keeps failing."""
    budget, uids = PromptBudget(retries=1), ("a", "bad", "c")
    chunk = Chunk((4, 5, 6))
    budget.failed(uids)
    [whole] = budget.retry(chunk, uids)
    assert whole == Chunk((4, 5, 6), retried=True)
    budget.failed(uids)
    assert budget.retry(whole, uids) == [Chunk((4,), True), Chunk((5,), True), Chunk((6,), True)]
    budget.failed(["bad"])  # alone: its third failure, over retries=1
    assert budget.retry(Chunk((5,), True), ["bad"]) == [] and budget.dropped == {"bad"}
    lone = PromptBudget(retries=1)
    lone.failed(["x"])  # a prompt alone from the start gets its retry
    assert lone.retry(Chunk((0,)), ["x"]) == [Chunk((0,), True)] and not lone.dropped
    never = PromptBudget(retries=0)
    never.failed(["x"])  # retries=0: dropped at its first failure alone
    assert never.retry(Chunk((0,)), ["x"]) == [] and never.dropped == {"x"}


def test_an_engine_fault_is_charged_once_its_prompts_succeed() -> None:
    budget = PromptBudget(retries=1)
    budget.failed(["a", "b"])
    assert not budget.drop_if_spent("a")  # one failure, within the budget
    budget.succeeded(["a", "b"])
    assert budget.take_charged() == 1 and budget.take_charged() == 0


def test_the_injector_fires_the_driver_s_faults_and_names_the_group_s_actors_once() -> None:
    """A group consults the injector as its phase starts, on the thread that works for the step."""
    log = FaultLog()
    injector = FaultInjector(parse_faults(["engine1:freeze@generate:2", "learner0:exit@train:2"]), log)
    log.begin(1)
    assert injector.at("generate", "engine") == {}
    log.begin(2)
    assert injector.at("generate", "engine") == {1: "freeze"}
    assert injector.at("generate", "engine") == {}  # fired: a replaced engine is spared
    assert injector.at("train", "learner") == {0: "exit"}
    assert log.fired == ["engine1:freeze@generate:2", "learner0:exit@train:2"]


def test_each_thread_works_for_its_own_step() -> None:
    """The asynchronous lookahead generates step k + 1 on its thread while the main one trains step
    k: each thread's faults and events are those of its own step."""
    import threading

    log = FaultLog()
    injector = FaultInjector(parse_faults(["engine0:raise@generate:3"]), log)
    log.begin(2)
    seen: dict[str, object] = {}

    def lookahead() -> None:
        log.begin(3)
        seen["faults"] = injector.at("generate", "engine")
        log.record("generate", "rollout worker 0", "died", 0.0, "replaced")

    thread = threading.Thread(target=lookahead)
    thread.start()
    thread.join()
    assert seen["faults"] == {0: "raise"} and log.history[0]["step"] == 3 and log.step == 2


def test_an_armed_actor_fails_once_at_its_phase() -> None:
    armed = ArmedFaults("rollout worker 0")
    armed.fire("generate")  # nothing armed: nothing happens
    armed.arm("generate", "raise")
    armed.fire("sync")  # another phase
    with pytest.raises(InjectedFault, match="rollout worker 0 generate"):
        armed.fire("generate")
    armed.fire("generate")  # once
