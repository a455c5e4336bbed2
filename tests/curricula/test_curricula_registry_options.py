"""Typed options through rlbase: ``curriculum_options``, ``curriculum_option_types``, options of plugins
(declared dataclass, signature, ``**kwargs``) and the documented defaults."""

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from curricula import (
    ProgressiveCurriculum,
    ProgressiveOptions,
    UniformCurriculum,
    UniformOptions,
    available_curricula,
    build_curriculum,
    check_curriculum_config,
    curriculum_option_types,
    curriculum_options,
    option_defaults,
    register_curriculum,
)
from curricula.testing import make_uids
from rlbase import FieldError, PluginError

REPO = Path(__file__).resolve().parents[2]

PLUGIN_MODULE = '''
from dataclasses import dataclass

from curricula import UniformCurriculum


@dataclass(frozen=True)
class WindowOptions:
    window: float = 0.25
    prior: float = 0.5


class Typed(UniformCurriculum):
    """Declares its options: gets a WindowOptions instance."""

    OPTIONS = WindowOptions

    def __init__(self, uids, *, seed=0, total_steps=None, store=None, options=None):
        super().__init__(uids, seed=seed, store=store)
        self.window_options = options


class Keywords(UniformCurriculum):
    """Declares none (a subclass inherits OPTIONS: unset it): options arrive as keywords, checked
    against the signature."""

    OPTIONS = None

    def __init__(self, uids, *, seed=0, total_steps=None, store=None, extra=1):
        super().__init__(uids, seed=seed, store=store)
        self.extra = extra


NOT_CALLABLE = 3


class Anything(UniformCurriculum):
    """Takes **kwargs: any option passes."""

    OPTIONS = None

    def __init__(self, uids, *, seed=0, total_steps=None, store=None, **kwargs):
        super().__init__(uids, seed=seed, store=store)
        self.kwargs = kwargs
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "my_plugin_curricula.py").write_text(PLUGIN_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_plugin_curricula"


def test_builtin_options_are_typed_frozen_dataclasses():
    opts = curriculum_options("progressive", {"sigma": 1, "schedule": "cosine", "center_start": None})
    assert opts == ProgressiveOptions(sigma=1.0, schedule="cosine")
    assert type(opts.sigma) is float  # an int from YAML becomes the declared float
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.sigma = 0.2
    assert curriculum_options("uniform", None) == UniformOptions()
    assert curriculum_options("uniform", {"retire_threshold": None}) == UniformOptions()


def test_unknown_key_names_the_field_with_a_hint_and_the_valid_keys():
    with pytest.raises(FieldError) as err:
        curriculum_options("progressive", {"sigmaa": 0.1})
    assert err.value.field == "curriculum.options.sigmaa"
    assert "Did you mean 'sigma'?" in err.value.problem
    valid = ", ".join(sorted(f.name for f in dataclasses.fields(ProgressiveOptions)))
    assert valid in err.value.fix
    with pytest.raises(FieldError) as err:
        curriculum_options("uniform", {"sigma": 0.1}, path="stages.grpo.curriculum.options")
    assert err.value.field == "stages.grpo.curriculum.options.sigma"


@pytest.mark.parametrize("options, field, match", [
    ({"sigma": "wide"}, "curriculum.options.sigma", "expected float"),
    ({"num_buckets": True}, "curriculum.options.num_buckets", "expected int"),
    ({"schedule": "step"}, "curriculum.options.schedule", "'linear', 'cosine'"),
    ({"schedule_over": "epochs"}, "curriculum.options.schedule_over", "'steps', 'epoch'"),
    # __post_init__ range checks still run, reported at the options mapping with the option's name
    ({"sigma": 0.0}, "curriculum.options", "sigma must be > 0"),
    ({"center_end": 1.5}, "curriculum.options", r"center_end is a pass rate and must be in \[0, 1\]"),
    ({"min_attempts_to_retire": 0}, "curriculum.options", "min_attempts_to_retire must be >= 1"),
])
def test_wrong_types_and_ranges_are_field_errors(options, field, match):
    with pytest.raises(FieldError, match=match) as err:
        curriculum_options("progressive", options)
    assert err.value.field == field
    with pytest.raises(ValueError, match=match):  # the config check raises the same
        check_curriculum_config("progressive", options)


def test_option_types_publish_the_builtins_and_registered_typed_curricula(fresh_registry):
    assert curriculum_option_types() == {"progressive": ProgressiveOptions, "uniform": UniformOptions}

    @dataclass(frozen=True)
    class EasyOptions:
        start: float = 1.0

    class EasyCurriculum(UniformCurriculum):
        easy_options: EasyOptions | None = None

    @register_curriculum("easy", options=EasyOptions)
    def easy(uids, *, seed=0, total_steps=None, store=None, options=None):
        cur = EasyCurriculum(uids, seed=seed, store=store)
        cur.easy_options = options
        return cur

    @register_curriculum("plain")
    def plain(uids, *, seed=0, total_steps=None, store=None):
        return UniformCurriculum(uids, seed=seed, store=store)

    assert curriculum_option_types() == {"easy": EasyOptions, "progressive": ProgressiveOptions,
                                         "uniform": UniformOptions}
    assert {"easy", "plain", "progressive", "uniform"} <= set(available_curricula())
    built = build_curriculum("easy", uids=["a"], start=0.5)
    assert isinstance(built, EasyCurriculum) and built.easy_options == EasyOptions(start=0.5)
    assert option_defaults("easy") == {"start": 1.0}
    with pytest.raises(FieldError, match="unknown key 'stat'"):
        build_curriculum("easy", uids=["a"], stat=0.5)


def test_registered_class_with_OPTIONS_gets_them(fresh_registry):
    @register_curriculum("prog2")
    class Prog2(ProgressiveCurriculum):
        pass

    assert curriculum_option_types()["prog2"] is ProgressiveOptions
    built = build_curriculum("prog2", uids=["a"], total_steps=2, sigma=0.3)
    assert isinstance(built, Prog2) and built.options.sigma == 0.3


def test_plugin_by_import_path_typed(plugin):
    cur: Any = build_curriculum(f"{plugin}.Typed", uids=make_uids(3), window=0.1)  # the plugin's own class
    assert cur.window_options == curriculum_options(f"{plugin}.Typed", {"window": 0.1})
    assert dataclasses.asdict(cur.window_options) == {"window": 0.1, "prior": 0.5}
    assert option_defaults(f"{plugin}:Typed") == {"window": 0.25, "prior": 0.5}
    with pytest.raises(FieldError) as err:
        curriculum_options(f"{plugin}.Typed", {"windw": 0.1})
    assert err.value.field == "curriculum.options.windw" and "Did you mean 'window'?" in err.value.problem


def test_plugin_by_import_path_keywords_and_kwargs(plugin):
    assert curriculum_options(f"{plugin}.Keywords", {"extra": 3}) == {"extra": 3}
    keywords: Any = build_curriculum(f"{plugin}.Keywords", uids=["a"], extra=3)  # the plugin's own class
    assert keywords.extra == 3
    assert option_defaults(f"{plugin}.Keywords") == {"extra": 1}
    with pytest.raises(FieldError) as err:
        check_curriculum_config(f"{plugin}.Keywords", {"extar": 3})
    assert err.value.field == "curriculum.options.extar" and "Did you mean 'extra'?" in err.value.problem
    with pytest.raises(FieldError, match="takes no option 'seed'"):  # context keywords are never options
        curriculum_options(f"{plugin}.Keywords", {"seed": 3})
    anything: Any = build_curriculum(f"{plugin}.Anything", uids=["a"], whatever=[1])
    assert anything.kwargs == {"whatever": [1]}


def test_import_errors_keep_their_wording(plugin):
    with pytest.raises(PluginError, match=re.escape("cannot import curriculum 'my_plugin_curricula.Nope'")):
        curriculum_options(f"{plugin}.Nope", {})
    with pytest.raises(PluginError, match="which is not a class or function") as err:
        curriculum_options(f"{plugin}.NOT_CALLABLE", {})
    assert "cannot import" not in str(err.value)  # it imported; the target is wrong


def _documented_defaults(section: str) -> dict[str, object]:
    docs = (REPO / "docs" / "curricula.md").read_text()
    body = docs.split(section, 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", body, flags=re.MULTILINE)
    plain = {"null": None, "true": True, "false": False}
    return {k: plain[v] if v in plain else (v.strip('"') if v.startswith('"') else float(v) if "." in v else int(v))
            for k, v in rows}


def test_docs_list_the_code_defaults():
    assert _documented_defaults("### Options and defaults") == option_defaults("progressive")
    assert _documented_defaults("### Uniform options") == option_defaults("uniform")
