"""Contract 5: the public API, the registry, user rewards and combinations."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import helper_rewards  # noqa: F401 - registers the t_* rewards
from rewards import (
    CombinedReward,
    Reward,
    RewardError,
    RewardInput,
    RewardOutput,
    build_reward,
    get_reward,
    register_reward,
)

REPO = Path(__file__).resolve().parents[2]


def inp(completion: str = "", reference: object = None, prompt: str = "", **metadata: object) -> RewardInput:
    return RewardInput(prompt=prompt, completion=completion, reference=reference, metadata=dict(metadata))


def test_import_is_light_and_fast() -> None:
    code = textwrap.dedent(
        """
        import sys, time
        t = time.perf_counter()
        import rewards
        from rewards import RewardInput, RewardOutput, get_reward, register_reward, build_reward, RewardPool
        elapsed = time.perf_counter() - t
        heavy = [m for m in ("sympy", "math_verify", "torch", "vllm", "deepspeed", "transformers", "ray")
                 if m in sys.modules]
        print(heavy, elapsed)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    heavy, elapsed = out.stdout.strip().rsplit(" ", 1)
    assert heavy == "[]", out.stdout
    assert float(elapsed) < 1.0, out.stdout


def test_contract_example_math_and_output_fields() -> None:
    out = get_reward("math").score(inp("so \\boxed{42}", "42"))
    assert isinstance(out, RewardOutput)
    assert (out.score, out.correct, out.timed_out, out.error) == (1.0, True, False, None)
    assert isinstance(out.details, dict)
    wrong = get_reward("math").score(inp("so \\boxed{41}", "42"))
    assert (wrong.score, wrong.correct) == (0.0, False)


def test_score_batch_keeps_order() -> None:
    golds = [str(i) for i in range(12)]
    batch = [inp(f"\\boxed{{{i if i % 3 else i + 1}}}", g) for i, g in enumerate(golds)]
    outs = get_reward("math").score_batch(batch)
    assert [o.correct for o in outs] == [i % 3 != 0 for i in range(12)]


def test_register_reward_float_output_and_options() -> None:
    reward = get_reward("t_len", scale=10.0)
    out = reward.score(inp("abcde"))
    assert out.score == pytest.approx(0.5)
    assert out.correct is False  # 0.5 < correct_threshold 1.0
    assert get_reward("t_len", scale=5.0).score(inp("abcde")).correct is True


def test_user_reward_returning_reward_output_is_kept() -> None:
    out = get_reward("t_output").score(inp("x"))
    assert out == RewardOutput(score=0.25, correct=True, details={"note": "custom"})


def test_async_user_reward_single_and_batch() -> None:
    reward = get_reward("t_async")
    assert reward.score(inp("yes")).score == 1.0
    outs = reward.score_batch([inp("yes"), inp("no"), inp("yes")])
    assert [o.score for o in outs] == [1.0, 0.0, 1.0]


def test_async_user_reward_timeout_is_recorded() -> None:
    out = get_reward("t_async_hang").score(inp("x"))
    assert out.timed_out and out.score == 0.0 and out.error


def test_raising_user_reward_is_recorded_not_raised() -> None:
    out = get_reward("t_raise").score(inp("x"))
    assert out.score == 0.0 and not out.correct
    assert "ValueError: user reward exploded" in out.error


@pytest.mark.parametrize("policy, expected", [("zero", 0.0), (-1.0, -1.0), ("-0.5", -0.5)])
def test_on_error_policy_scores(policy: object, expected: float) -> None:
    out = get_reward("t_raise", on_error=policy).score(inp("x"))
    assert out.score == expected and out.error


def test_on_error_raise_reraises_for_debugging() -> None:
    with pytest.raises(ValueError, match="exploded"):
        get_reward("t_raise", on_error="raise").score(inp("x"))


def test_non_finite_user_score_is_an_error() -> None:
    out = get_reward("t_nan").score(inp("x"))
    assert out.score == 0.0 and "non-finite" in out.error


def test_registry_refuses_silent_override_but_allows_reregistration() -> None:
    def first(i: RewardInput) -> float:
        return 1.0

    def second(i: RewardInput) -> float:
        return 2.0

    register_reward("t_dup")(first)
    register_reward("t_dup")(first)  # the same object again (a re-imported module) is fine
    with pytest.raises(RewardError, match="already registered"):
        register_reward("t_dup")(second)
    register_reward("t_dup", overwrite=True)(second)
    assert get_reward("t_dup").score(inp("")).score == 2.0
    with pytest.raises(RewardError, match="built-in"):
        register_reward("math")(second)


def test_unknown_reward_error_is_actionable() -> None:
    with pytest.raises(RewardError) as err:
        get_reward("no_such_reward")
    message = str(err.value)
    assert "math" in message and "@register_reward" in message and "rlplat.rewards" in message


@pytest.mark.parametrize("path", ["helper_rewards.unregistered_reward", "helper_rewards:unregistered_reward"])
def test_dotted_path_reward(path: str) -> None:
    assert get_reward(path).score(inp("")).score == 0.5


def test_hydra_target_with_kwargs() -> None:
    reward = get_reward({"_target_": "helper_rewards.unregistered_reward", "bonus": 0.25})
    assert reward.score(inp("")).score == 0.75
    builtin_cls = get_reward({"_target_": "rewards.format.FormatReward", "default_mode": "off"})
    assert builtin_cls.score(inp("plain answer")).correct


def test_bad_target_is_a_config_error() -> None:
    with pytest.raises(RewardError):
        get_reward({"_target_": "helper_rewards.does_not_exist"})
    with pytest.raises(RewardError):
        get_reward({"_target_": "no_such_module_xyz.fn"})
    with pytest.raises(RewardError, match="bad options"):
        get_reward("math", no_such_option=1)


def test_entry_point_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rlplat_test_plugin_mod.py").write_text("def reward(inp):\n    return 0.125\n")
    dist = tmp_path / "rlplat_test_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rlplat-test-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[rlplat.rewards]\nplugin_eighth = rlplat_test_plugin_mod:reward\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert get_reward("plugin_eighth").score(inp("")).score == 0.125


def test_module_listed_in_config_is_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_cfg_rewards.py").write_text(
        "from rewards import register_reward\n"
        "@register_reward('from_config_module')\n"
        "def r(inp):\n    return 0.75\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reward = build_reward({"components": {"from_config_module": 1.0}, "modules": ["my_cfg_rewards"]})
    assert reward.score(inp("")).score == 0.75


def test_combination_weights_details_and_accuracy() -> None:
    config = {"components": {"format": 0.1, "math": 1.0}, "accuracy": "math",
              "options": {"format": {"default_mode": "on"}}}
    reward = build_reward(config)
    assert isinstance(reward, CombinedReward)
    good = reward.score(inp("<think>2+2</think> The answer is \\boxed{4}", "4"))
    assert good.score == pytest.approx(1.1)
    assert good.correct is True
    assert good.details["math"] == 1.0 and good.details["format"] == 1.0
    assert good.details["math/extracted"] == "4"
    no_think = reward.score(inp("The answer is \\boxed{4}", "4"))
    assert no_think.score == pytest.approx(1.0) and no_think.correct  # accuracy comes from math
    wrong = reward.score(inp("<think>x</think> \\boxed{5}", "4"))
    assert wrong.score == pytest.approx(0.1) and wrong.correct is False


def test_combination_default_accuracy_is_first_component() -> None:
    reward = build_reward({"components": ["format", "math"], "options": {"format": {"default_mode": "off"}}})
    out = reward.score(inp("\\boxed{5}", "4"))
    assert out.correct is True  # format accepted; math did not
    assert out.score == pytest.approx(1.0)


def test_combination_records_component_errors() -> None:
    reward = build_reward({"components": {"math": 1.0, "t_raise": 0.5}})
    out = reward.score(inp("\\boxed{1}", "1"))
    assert out.score == 1.0 and out.correct
    assert "t_raise: ValueError" in out.error


@pytest.mark.parametrize(
    "config, match",
    [
        ({"components": {"math": 1.0}, "accuracy": "format"}, "accuracy"),
        ({"components": {"math": "heavy"}}, "weight"),
        ({"components": {"math": 1.0}, "options": {"code": {}}}, "not components"),
        ({"components": {"math": 1.0}, "typo": 1}, "unknown reward config keys"),
        ({"components": {"math": 1.0}, "on_error": "sometimes"}, "on_error"),
        ({"components": {"math": 1.0}, "modules": ["no_such_module_abc"]}, "no_such_module_abc"),
        ({"components": {}}, "at least one"),
        (42, "name or a mapping"),
    ],
)
def test_build_reward_config_errors(config: object, match: str) -> None:
    with pytest.raises(RewardError, match=match):
        build_reward(config)  # type: ignore[arg-type]


def test_build_reward_plain_name_and_target_are_single_components() -> None:
    single = build_reward("math")
    assert [c.name for c in single.components] == ["math"]
    assert single.score(inp("\\boxed{3}", "3")).details["math"] == 1.0
    target = build_reward({"_target_": "helper_rewards.unregistered_reward"})
    assert target.score(inp("")).details["unregistered_reward"] == 0.5


def test_reward_subclass_can_be_registered() -> None:
    @register_reward("t_class")
    class Shouty(Reward):
        def _score(self, inp: RewardInput) -> RewardOutput:
            return RewardOutput(score=float(inp.completion.isupper()), correct=inp.completion.isupper())

    assert get_reward("t_class").score(inp("YES")).correct
    assert get_reward("t_class").name == "t_class"


@pytest.mark.parametrize(
    "bad",
    [
        RewardInput(prompt=None, completion=None, reference=None, metadata=None),  # type: ignore[arg-type]
        RewardInput(prompt="", completion=b"\xff\xfe\\boxed{1}", reference="1"),  # type: ignore[arg-type]
        {"prompt": "p", "completion": "\\boxed{1}", "reference": "1"},
        "not an input at all",
    ],
)
def test_malformed_inputs_never_raise(bad: object) -> None:
    for name in ("math", "format", "t_len"):
        out = get_reward(name).score(bad)  # type: ignore[arg-type]
        assert isinstance(out, RewardOutput)
