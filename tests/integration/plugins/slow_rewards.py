"""A user reward that hangs on some samples (fault injection: a verifier that never returns)."""

import time
import zlib

from rewards import RewardInput, get_reward, register_reward


@register_reward("sometimes_hangs")
def sometimes_hangs(inp: RewardInput) -> float:
    """The math reward, except that one completion in 16 makes it sleep far past any deadline (a few
    per step of the fault tests: each costs ``reward.timeout_s``)."""
    if zlib.crc32(inp.completion.encode()) % 16 == 0:
        time.sleep(3600)
    return get_reward("math").score(inp).score
