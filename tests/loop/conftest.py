"""Fixtures of the loop harness: one in-process reward pool for the session (its workers take a
second or two to start; each run resets its counters)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import new_pool
from rewards import RewardPool


@pytest.fixture(scope="session")
def pool() -> Iterator[RewardPool]:
    """The default math reward's pool, in this process."""
    with new_pool() as p:
        yield p
