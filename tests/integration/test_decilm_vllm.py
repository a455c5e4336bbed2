"""vLLM's width rule for a DeciLM FFN (``ffn_mult`` -> intermediate size) is rlplat's, so a Puzzle
child rlplat saves is served with the FFNs it was trained with. (That vLLM serves a child with the
module's own greedy tokens and log-probs is test_weight_sync's DeciLM test, through the engine actor.)

vLLM is imported in a child process: it binds OpenMP threads and spawns helpers at import time,
which must not leak into the pytest process (docs/design.md: vLLM code runs under ``__main__`` or
in an actor).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from rlplat.models.decilm_format import ffn_width

pytestmark = pytest.mark.slow

PAIRS = [(128, 1.0), (128, 5.25), (4096, 5.25), (8192, 1.3), (16384, 1.95), (3072, 2.0 / 0.75)]
SCRIPT = textwrap.dedent("""
    import json, sys
    from vllm.model_executor.models.nemotron_nas import _ffn_mult_to_intermediate_size

    print(json.dumps([_ffn_mult_to_intermediate_size(m, h) for h, m in json.loads(sys.argv[1])]))
""")


def test_vllm_sizes_each_ffn_as_rlplat_does() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(PAIRS)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    widths = json.loads(proc.stdout.strip().splitlines()[-1])
    assert widths == [ffn_width(h, m) for h, m in PAIRS]
