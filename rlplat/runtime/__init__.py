"""Orchestration: what drives the actors of a stage.

``stage_actors`` (placement group, learners, engines, reward scorer), ``weight_sync`` (the
versioned learner -> engines sync with a deadline), ``precision`` (FP8 engines and the mismatch
guardrail), ``scorer`` (the reward pool as an actor),
``prompts`` (prompt sets, tokenised once), ``evaluation`` (held-out pass rate), ``plan_report``
(the dry run), ``signals`` (preemption), ``supervised`` (the supervised training loop) and ``report``
(the end-of-run summary). Stages
(``rlplat.stages``) are built from these.
"""
