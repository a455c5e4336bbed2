"""Learner -> rollout weight sync: bucketed, versioned, with a deadline.

``buckets`` packs named tensors into flat byte buckets (pure torch); ``transport`` moves buckets
through /dev/shm on the same node (the paper's route) or the Ray object store across nodes.
"""
