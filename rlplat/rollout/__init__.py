"""Rollout engines: the only package that imports vLLM (lazily, inside the actor)."""
