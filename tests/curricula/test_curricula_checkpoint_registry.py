"""Resume contract, the factory (names, options, import paths, the docs' example) and import hygiene."""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from curricula import (
    GroupOutcome,
    PassRateStore,
    ProgressiveCurriculum,
    ProgressiveOptions,
    UniformCurriculum,
    build_curriculum,
    check_curriculum_config,
    option_defaults,
    register_curriculum,
    resolve_factory,
)
from curricula.testing import check_curriculum_contract, make_uids, simulate_outcomes, store_with_rates
from rlbase import FieldError

REPO = Path(__file__).resolve().parents[2]
N = 40


def seeded_store() -> PassRateStore:
    return store_with_rates(make_uids(N), [i % 6 for i in range(N)])


def builders():
    return {
        "progressive": lambda: build_curriculum("progressive", uids=make_uids(N), seed=5, total_steps=12,
                                                store=seeded_store(), min_attempts_to_retire=8),
        "uniform": lambda: build_curriculum("uniform", uids=make_uids(N), seed=5, total_steps=12,
                                            store=seeded_store(), retire_threshold=1.0, min_attempts_to_retire=8),
    }


@pytest.mark.filterwarnings("ignore:.*set schedule_over='epoch'")
@pytest.mark.parametrize("name", ["progressive", "uniform"])
def test_resume_gives_identical_future_batches(name):
    make = builders()[name]
    sim = np.random.default_rng(0)
    true_rates = np.linspace(0, 1, N)
    original = make()
    for step in range(7):  # mid-epoch, with observations and (likely) retirements
        idx = original.next_batch(6)
        if step == 3:
            idx += original.next_batch(2, refill=True)
        original.observe(simulate_outcomes(make_uids(N), idx, true_rates, sim))
    assert original.metrics()["curriculum/retired"] > 0
    state = json.loads(json.dumps(original.state_dict()))  # checkpoints are JSON
    restored = make()
    restored.load_state_dict(state)
    assert restored.metrics() == original.metrics()
    assert restored.store == original.store
    for _ in range(10):
        a, b = original.next_batch(6), restored.next_batch(6)
        assert a == b
        outcomes = simulate_outcomes(make_uids(N), a, true_rates, sim)
        original.observe(outcomes)
        restored.observe(outcomes)


def test_resume_contract_helper_passes_for_builtins_and_catches_a_broken_sampler():
    for make in builders().values():
        check_curriculum_contract(make, num_prompts=N)

    class Forgetful(UniformCurriculum):  # loses its RNG on resume
        def load_state_dict(self, state):
            super().load_state_dict(state)
            self._rng = np.random.default_rng(123)

    with pytest.raises(AssertionError, match="diverged"):
        check_curriculum_contract(lambda: Forgetful(make_uids(N), seed=0), num_prompts=N, steps_after=20)


def test_checkpoint_from_other_dataset_or_kind_is_refused():
    cur = builders()["progressive"]()
    cur.next_batch(4)
    state = cur.state_dict()
    other = ProgressiveCurriculum(make_uids(N + 1), total_steps=12)
    with pytest.raises(ValueError, match="different dataset"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="holds a 'progressive' curriculum"):
        UniformCurriculum(make_uids(N)).load_state_dict(state)
    with pytest.raises(ValueError, match="missing keys"):
        builders()["progressive"]().load_state_dict({k: v for k, v in state.items() if k != "rng"})
    changed = ProgressiveCurriculum(make_uids(N), seed=5, total_steps=12, store=seeded_store())
    with pytest.warns(UserWarning, match="min_attempts_to_retire"):
        changed.load_state_dict(state)


def test_build_by_name_and_option_errors():
    cur = build_curriculum("progressive", uids=["a", "b"], seed=0, total_steps=3, sigma=0.1, schedule="cosine")
    assert isinstance(cur, ProgressiveCurriculum)
    assert cur.options == ProgressiveOptions(sigma=0.1, schedule="cosine") and cur.total_steps == 3
    assert isinstance(build_curriculum("uniform", uids=["a"], seed=0, total_steps=3, store=None), UniformCurriculum)
    with pytest.raises(FieldError, match=r"unknown key 'sigmaa'\. Did you mean 'sigma'\?.*use one of: .*sigma") as err:
        build_curriculum("progressive", uids=["a"], total_steps=3, sigmaa=0.1)
    assert err.value.field == "curriculum.options.sigmaa"
    with pytest.raises(ValueError, match="unknown curriculum 'progresive'"):
        build_curriculum("progresive", uids=["a"])
    with pytest.raises(ValueError, match=re.escape("cannot import curriculum 'no_such_module_xyz.Thing'")):
        build_curriculum("no_such_module_xyz.Thing", uids=["a"])
    with pytest.raises(ValueError, match="sigma must be > 0"):
        check_curriculum_config("progressive", {"sigma": -1})
    with pytest.raises(ValueError, match="total_steps >= 1"):  # the schedule needs a length
        build_curriculum("progressive", uids=["a"])
    check_curriculum_config("uniform", {"retire_threshold": 0.9})
    assert option_defaults("progressive")["sigma"] == 0.15


def test_register_refuses_duplicates_and_dotted_names(fresh_registry):
    with pytest.raises(ValueError, match="already registered"):
        register_curriculum("uniform")(UniformCurriculum)

    def make(uids, seed=0, total_steps=None, store=None):
        return UniformCurriculum(uids, seed=seed, store=store)

    def other(uids, seed=0, total_steps=None, store=None):
        return UniformCurriculum(uids, seed=seed, store=store)

    register_curriculum("mine")(make)
    register_curriculum("mine")(make)  # the same definition again (a module imported twice) is fine
    with pytest.raises(ValueError, match="already registered"):
        register_curriculum("mine")(other)
    register_curriculum("mine", overwrite=True)(other)
    assert resolve_factory("mine") is other
    with pytest.raises(ValueError, match="must not contain"):
        register_curriculum("a.b")


USER_MODULE = '''
import numpy as np

class HardestFirst:
    """Always the prompts with the lowest known pass rate; no state but the store and a step."""

    def __init__(self, uids, seed=0, total_steps=1, store=None, extra=1):
        self.uids, self.store, self.step, self.extra = list(uids), store, 0, extra

    def next_batch(self, batch_size, *, refill=False):
        self.step += 0 if refill else 1
        rates = [self.store.latest_pass_rate(u) if self.store else None for u in self.uids]
        order = sorted(range(len(self.uids)), key=lambda i: (1.0 if rates[i] is None else rates[i], i))
        return order[:batch_size]

    def observe(self, outcomes):
        self.store.update(outcomes)

    def metrics(self):
        return {"curriculum/step": float(self.step)}

    def state_dict(self):
        return {"step": self.step, "store": self.store.state_dict()}

    def load_state_dict(self, state):
        self.step = state["step"]
        self.store.load_state_dict(state["store"])

class NotACurriculum:
    def __init__(self, **kwargs):
        pass
'''


def test_user_curriculum_via_dotted_path(tmp_path, monkeypatch):
    (tmp_path / "my_user_curricula.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    store = store_with_rates(["a", "b", "c"], [4, 1, 7])
    cur: Any = build_curriculum("my_user_curricula.HardestFirst", uids=["a", "b", "c"], seed=0, total_steps=5,
                                store=store, extra=2)  # the user module's own class
    assert type(cur).__name__ == "HardestFirst" and cur.extra == 2
    assert cur.next_batch(2) == [1, 0]
    cur.observe([GroupOutcome(uid="b", rewards=[1, 1], correct=[True, True])])
    assert cur.next_batch(2) == [0, 2]
    assert build_curriculum("my_user_curricula:HardestFirst", uids=["a"], store=PassRateStore()).next_batch(1) == [0]
    with pytest.raises(TypeError, match="lacks next_batch"):
        build_curriculum("my_user_curricula.NotACurriculum", uids=["a"])


def test_docs_example_curriculum_builds_and_honours_the_contract(tmp_path, monkeypatch):
    docs = (REPO / "docs" / "curricula.md").read_text()
    blocks = re.findall(r"```python\n# my_curricula\.py\n(.*?)```", docs, flags=re.DOTALL)
    assert len(blocks) == 1, "docs/curricula.md must hold one ```python block starting '# my_curricula.py'"
    (tmp_path / "my_curricula.py").write_text(blocks[0])
    monkeypatch.syspath_prepend(str(tmp_path))
    def make():
        return build_curriculum("my_curricula.EasyFirstWindow", uids=make_uids(N), seed=1, total_steps=10,
                                store=seeded_store(), window=0.25)

    check_curriculum_contract(make, num_prompts=N)


def test_import_needs_no_gpu_stack_and_not_rlplat():
    # curricula stands on rlbase and numpy only: never rlplat, rewards or the GPU stack.
    code = ("import sys, curricula, curricula.testing; "
            "curricula.build_curriculum('progressive', uids=['a'], total_steps=1); "
            "bad = [m for m in ('torch', 'vllm', 'ray', 'deepspeed', 'rlplat', 'rewards') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
