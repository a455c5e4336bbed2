"""Orchestration: what drives the actors of a stage.

* ``stage_actors``: placement group, learners, engines or teachers, reward scorer.
* ``protocols``: what the GRPO loop calls (engines, learners, scorer, weight sync), so that it runs
  over the Ray actor groups in production and over in-process fakes in tests.
* ``ledger``: where a GRPO run stands (step, checkpoint, engine version) and the records a
  checkpoint carries beside it.
* ``weight_sync``: the versioned learner -> engines sync.
* ``precision``: FP8 engines and the mismatch guardrail.
* ``scorer``: the reward pool as an actor.
* ``lookahead``: asynchronous GRPO's next batch, generated while the learners train.
* ``prompts``: prompt sets, tokenised once; ``evaluation``: the held-out pass rate;
  ``toggle_eval``: the reasoning toggle's compliance.
* ``pass_rates``: the run's shared pass-rate store.
* ``plan_report``: the dry run's placement and memory plan.
* ``signals``: preemption; ``timing``: phase timers.
* ``supervised``: the supervised training loop.

Stages (``rlplat.stages``) are built from these.
"""
