"""A user reward that gives an untrained model a spread of per-prompt pass rates (curriculum tests).

A randomly initialised tiny model never solves the arithmetic task: every pass rate would be 0 and
a curriculum would have nothing to order. This reward accepts a completion when a checksum of its
text is even, about half of the samples and independently of each other, so groups of 4 samples
land on every pass rate from 0 to 1 and some are informative, some not.
"""

import zlib

from rewards import RewardInput, register_reward


@register_reward("coin_flip")
def coin_flip(inp: RewardInput) -> float:
    """1.0 (correct) when the CRC-32 of the completion is even, else 0.0."""
    return 1.0 if zlib.crc32(inp.completion.encode()) % 2 == 0 else 0.0
