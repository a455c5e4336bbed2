"""Imported once by the reward pool's fork server (``multiprocessing`` forkserver preload).

It pays the import of math-verify/sympy and their first-use costs in the fork server, so every
reward worker forked from it starts warm: replacing a killed worker then takes milliseconds
instead of the seconds a fresh interpreter needs, which is what keeps throughput up when samples
time out. Failures are ignored: a worker without the warm state just warms itself.
"""

try:
    from rewards.math import MathReward

    MathReward().warmup()
except Exception:  # noqa: BLE001 - math-verify may be absent; workers then import on their own
    pass
