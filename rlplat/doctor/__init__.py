"""``python -m rlplat.doctor`` (``rlplat doctor``): is this machine ready for a run?

Like ``ds_report`` or ``vllm collect-env``, but it also runs the RL loop's critical paths on a tiny
model. ``runner`` (the checks and their verdicts) and ``table`` (the report) are pure;
``environment`` checks versions and devices; ``smoke`` drives the real actors; ``__main__`` is the
command. Nothing here is imported by the rest of rlplat.
"""
