"""Contract 5: the public API, the registry, user rewards and combinations."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import helper_rewards  # registers the t_* rewards
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


HEAVY = ("sympy", "math_verify", "torch", "vllm", "deepspeed", "transformers", "ray", "numpy", "rlplat")


def modules_after(statement: str) -> set[str]:
    """Top-level packages in sys.modules after running ``statement`` in a fresh interpreter."""
    code = f"import sys\n{statement}\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "statement",
    [
        "from rewards import RewardInput, RewardOutput, get_reward, register_reward, build_reward, RewardPool",
        "from rewards import last_boxed; last_boxed('\\\\boxed{1}')",
        "from rewards import get_reward; get_reward('format'); get_reward('code')",
    ],
)
def test_import_is_light(statement: str) -> None:
    """Importing rewards (and building the non-math rewards) loads no heavy package, and never rlplat."""
    loaded = modules_after(statement)
    assert "rewards" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_math_verify_is_imported_on_first_use_only() -> None:
    assert "math_verify" not in modules_after("from rewards import get_reward; get_reward('math')")
    assert "math_verify" in modules_after(
        "from rewards import RewardInput, get_reward\nget_reward('math').score(RewardInput('', '\\\\boxed{1}', '1'))")


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
    assert "ValueError: user reward exploded" in (out.error or "")


@pytest.mark.parametrize("policy, expected", [("zero", 0.0), (-1.0, -1.0), ("-0.5", -0.5)])
def test_on_error_policy_scores(policy: object, expected: float) -> None:
    out = get_reward("t_raise", on_error=policy).score(inp("x"))
    assert out.score == expected and out.error


def test_on_error_raise_reraises_for_debugging() -> None:
    with pytest.raises(ValueError, match="exploded"):
        get_reward("t_raise", on_error="raise").score(inp("x"))


def test_non_finite_user_score_is_an_error() -> None:
    out = get_reward("t_nan").score(inp("x"))
    assert out.score == 0.0 and "non-finite" in (out.error or "")


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


@pytest.mark.parametrize("spec", ["helper_rewards.CONSTANT_INSTANCE", {"_target_": "helper_rewards:CONSTANT_INSTANCE"}])
def test_import_path_to_a_reward_instance(spec: object) -> None:
    reward = get_reward(spec)  # type: ignore[arg-type]
    assert reward is helper_rewards.CONSTANT_INSTANCE and reward.score(inp("")).score == 0.375
    with pytest.raises(RewardError, match="instance"):
        get_reward(spec, on_error=-1.0)  # type: ignore[arg-type]


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


@pytest.mark.parametrize(
    "spec, options, named, valid",
    [
        ("math", {"strategy": ["boxed"]}, "strategy", ["strategies", "think_fallback", "on_error"]),
        ("code", {"timeout": 3}, "timeout", ["timeout_s", "per_test_timeout_s"]),
        ("format", {"default_mod": "on"}, "default_mod", ["default_mode", "on_error"]),
        ("t_len", {"scael": 2.0}, "scael", ["scale", "on_error", "correct_threshold", "timeout_s"]),
        ({"_target_": "helper_rewards.unregistered_reward"}, {"bonsu": 1.0}, "bonsu", ["bonus"]),
        ("judge", {"modle": "x"}, "modle", ["model", "base_url", "template"]),
    ],
)
def test_unknown_options_are_rejected_naming_the_valid_ones(spec: object, options: dict, named: str,
                                                            valid: list[str]) -> None:
    with pytest.raises(RewardError) as err:
        get_reward(spec, **options)  # type: ignore[arg-type]
    message = str(err.value)
    assert f"'{named}'" in message and all(v in message for v in valid), message
    assert "Did you mean" in message, message


def test_unknown_options_in_a_combination_are_rejected_before_scoring() -> None:
    with pytest.raises(RewardError, match=re.escape("reward.options.math.strategy")):
        build_reward({"components": {"math": 1.0}, "options": {"math": {"strategy": ["boxed"]}}})


def test_function_reward_with_kwargs_accepts_any_option() -> None:
    def anything(inp: RewardInput, **kwargs: object) -> float:
        return float(len(kwargs))

    register_reward("t_kwargs")(anything)
    assert get_reward("t_kwargs", a=1, b=2).score(inp("")).score == 2.0


def test_registration_defaults_are_options_under_the_config() -> None:
    assert get_reward("t_output").correct_threshold == 0.5  # type: ignore[attr-defined]
    assert get_reward("t_output", correct_threshold=0.1).correct_threshold == 0.1  # type: ignore[attr-defined]


def test_judge_client_options_need_the_openai_backend() -> None:
    with pytest.raises(RewardError, match="OpenAI-compatible client"):
        get_reward("judge", backend=lambda prompts: prompts, model="x")
    with pytest.raises(RewardError, match="backend_options"):
        get_reward("judge", backend=lambda prompts: prompts, backend_options={"keyword": "1"})
    with pytest.raises(RewardError, match="judge backend"):
        get_reward("judge", backend="no_such_module_xyz.Judge")


@pytest.mark.parametrize("name", ["", "a.b", "pkg:fn", 3])
def test_reward_names_that_would_read_as_import_paths_are_refused(name: object) -> None:
    with pytest.raises(RewardError, match="reward name"):
        register_reward(name)(lambda i: 1.0)  # type: ignore[arg-type]


def test_non_callable_registration_is_a_config_error() -> None:
    with pytest.raises(RewardError, match="t_not_callable"):
        register_reward("t_not_callable")(42)


def test_instance_spec_takes_no_options() -> None:
    reward = get_reward("format")
    assert get_reward(reward) is reward
    with pytest.raises(RewardError, match="instance"):
        get_reward(reward, default_mode="on")


@dataclass(frozen=True)
class PenaltyOptions:
    per_char: float = 0.01
    on_error: float = 0.0


class Penalty(Reward):
    """A Reward class whose options are declared by a dataclass (type-checked at build time)."""

    OPTIONS = PenaltyOptions

    def __init__(self, *, per_char: float = 0.01, on_error: float = 0.0) -> None:
        super().__init__(on_error=on_error)
        self.per_char = per_char

    def _score(self, inp: RewardInput) -> RewardOutput:
        return RewardOutput(score=-self.per_char * len(inp.completion))


@pytest.mark.parametrize("spec", ["t_options_class", {"_target_": "test_api.Penalty"}])
def test_options_dataclass_of_a_reward_class(spec: object) -> None:
    register_reward("t_options_class")(Penalty)
    assert get_reward(spec, per_char=0.5).score(inp("ab")).score == -1.0  # type: ignore[arg-type]
    with pytest.raises(RewardError, match="per_char"):
        get_reward(spec, per_char="lots")  # type: ignore[arg-type]
    with pytest.raises(RewardError, match="per_chr"):
        get_reward(spec, per_chr=1.0)  # type: ignore[arg-type]


def test_registry_is_the_rlbase_registry() -> None:
    import rlbase
    from rewards.registry import REGISTRY, registered_names

    assert isinstance(REGISTRY, rlbase.Registry) and REGISTRY.kind == "reward"
    assert {"math", "code", "format", "judge", "t_len"} <= set(registered_names())
    assert REGISTRY.resolve("t_len").target is helper_rewards.length_reward
    import rewards.registry

    assert not hasattr(rewards.registry, "_identity")
    assert vars(rewards.registry)["import_object"] is rlbase.import_object  # one dotted-path importer


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
    assert "t_raise: ValueError" in (out.error or "")


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


NOT_AN_INPUT = (0.0, "TypeError: expected RewardInput, got str")


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        # Missing fields become "": math has no reference to compare with (an error); the others score "".
        (RewardInput(prompt=None, completion=None, reference=None, metadata=None),  # type: ignore[arg-type]
         {"math": (0.0, "RewardError: math reward needs a reference answer"), "format": (0.0, None),
          "t_len": (0.0, None)}),
        # Bytes are decoded with replacement: the boxed answer is still read; 11 characters.
        (RewardInput(prompt="", completion=b"\xff\xfe\\boxed{1}", reference="1"),  # type: ignore[arg-type]
         {"math": (1.0, None), "format": (1.0, None), "t_len": (0.11, None)}),
        # A mapping with the input's keys is an input.
        ({"prompt": "p", "completion": "\\boxed{1}", "reference": "1"},
         {"math": (1.0, None), "format": (1.0, None), "t_len": (0.09, None)}),
        # Anything else fails: scored by on_error (0 by default), with the reason.
        ("not an input at all", {"math": NOT_AN_INPUT, "format": NOT_AN_INPUT, "t_len": NOT_AN_INPUT}),
    ],
    ids=["none-fields", "bytes", "mapping", "str"],
)
def test_malformed_inputs_never_raise(bad: object, expected: dict[str, tuple[float, str | None]]) -> None:
    """Never an exception: a score, and an error exactly where the input could not be scored."""
    for name, (score, error) in expected.items():
        out = get_reward(name).score(bad)  # type: ignore[arg-type]
        assert isinstance(out, RewardOutput)
        assert out.score == pytest.approx(score), (name, out)
        if error is None:
            assert out.error is None, (name, out)
        else:
            assert out.error is not None and out.error.startswith(error), (name, out)
