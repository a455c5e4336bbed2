"""rlplat: reinforcement learning from verifiers for reasoning language models.

The package is light to import: vLLM is imported only under ``rlplat.rollout`` and
DeepSpeed only under ``rlplat.learner``, so configuration, algorithms and data code run anywhere.
"""

__version__ = "0.1.0"
