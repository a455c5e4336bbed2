"""Compose the run config with Hydra (compose API) and convert it to the typed ``Config``.

The compose API is used instead of ``@hydra.main`` so that composition errors (a misspelt key, a
missing experiment) become our one-paragraph ``ConfigError`` with exit code 2, and so that the run
directory is created by rlplat (``hydra.run.dir=DIR`` still chooses it; ``run_dir=DIR`` is the same).

What Hydra sees: the schema's defaults as the ``rlplat_defaults`` node (``rlplat/config/schema.py``
is the one place defaults live), then the config groups ``model``, ``reward`` and ``curriculum``
(``curriculum=progressive`` selects a curriculum together with its typed default options, published
here from ``curricula``), then ``rlplat/conf/config.yaml`` and the experiment. One extension of
Hydra's override grammar: a mapping assigned to a mapping-typed field
(``reward.components={math: 1.0, concise: 0.1}``) replaces the mapping, as it would in YAML, instead
of failing on the new keys.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any

from rlbase import did_you_mean, field_keys, to_plain
from rlplat.config.convert import to_config
from rlplat.config.errors import ConfigError
from rlplat.config.schema import Config

# Mapping-typed fields whose keys are not known in advance; a mapping assigned to one replaces it.
MAPPING_FIELDS = ("reward.components", "reward.options", "curriculum.options")
# Fields that config groups provide (so the defaults node leaves them out: a group's mapping must
# replace the default's, not merge into it).
GROUP_FIELDS = {"reward": ("components",), "curriculum": ("name", "options")}
# The ``curriculum`` group's entry for a curriculum named by import path.
CUSTOM_CURRICULUM = "custom"


def conf_dir() -> Path:
    """The ``rlplat/conf`` directory shipped with the package (``RLPLAT_CONF_DIR`` overrides it)."""
    env = os.environ.get("RLPLAT_CONF_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "conf"


def load(overrides: list[str]) -> tuple[Config, Path]:
    """Typed config and run directory for command-line ``overrides``.

    ``resume=DIR`` starts from ``DIR/config.yaml`` (the run's own resolved config) and applies the
    other overrides on top, so a resumed run is the same run unless told otherwise.

    Raises:
        ConfigError: a bad override or value; ``run_dir`` and ``hydra.run.dir`` naming two
            directories, or ``run_dir`` set in a config file (only ``hydra.run.dir`` chooses there).
    """
    overrides = run_dir_alias(overrides)
    resume = _resume_dir(overrides)
    if resume is not None:
        return _load_resumed(resume, [o for o in overrides if not o.startswith("resume=")])
    data, run_dir = _compose(overrides)
    data["stages"] = own_model_stages(data, overrides)
    if data.get("run_dir") not in (Config().run_dir, str(run_dir)):
        raise ConfigError("run_dir", f"run_dir={data['run_dir']} is set in a config file, where it does not choose "
                          "the run directory.", "set hydra.run.dir there instead (hydra: {run: {dir: DIR}}), or give "
                          "run_dir=DIR on the command line.")
    return to_config({**data, "run_dir": str(run_dir)}), run_dir


def own_model_stages(data: dict[str, Any], overrides: list[str]) -> list[str]:
    """The stages of the composed config ``data``: GRPO alone when ``model.path`` names a model of
    one's own and nothing chose the stages (the default's ``warmstart`` teaches the tiny built-in
    model the synthetic task's format, which a model of one's own neither needs nor fits)."""
    stages = list(data["stages"])
    chosen = any(o.partition("=")[0].lstrip("+") == "stages" for o in overrides)
    if data["model"].get("path") and not chosen and tuple(stages) == Config().stages:
        import logging

        logging.getLogger(__name__).info("model.path is set and stages= is not: running stages=[grpo] (the "
                                         "built-in warm start is for the tiny default model)")
        return ["grpo"]
    return stages


def run_dir_alias(overrides: list[str]) -> list[str]:
    """``run_dir=DIR`` on the command line means ``hydra.run.dir=DIR``: Hydra chooses the run
    directory (its default is in ``rlplat/conf/config.yaml``) and the field records the choice.

    Raises:
        ConfigError: ``run_dir`` and ``hydra.run.dir`` given with different directories.
    """
    given = {key.lstrip("+"): value for key, _, value in (o.partition("=") for o in overrides)
             if key.lstrip("+") in ("run_dir", "hydra.run.dir")}
    if "run_dir" not in given:
        return overrides
    if given.get("hydra.run.dir", given["run_dir"]) != given["run_dir"]:
        raise ConfigError("run_dir", f"run_dir={given['run_dir']} and hydra.run.dir={given['hydra.run.dir']} name "
                          "two run directories.", "give one of them (they mean the same).")
    kept = [o for o in overrides if o.partition("=")[0].lstrip("+") not in ("run_dir", "hydra.run.dir")]
    return [*kept, f"hydra.run.dir={given['run_dir']}"]


def register_defaults() -> None:
    """Publish the schema's defaults and the curricula's typed options to Hydra's ConfigStore.

    The YAML files then list only what they change, any schema field can be overridden from the
    command line without a ``+``, and unknown keys are still rejected.
    """
    from hydra.core.config_store import ConfigStore

    from curricula import curriculum_option_types

    store = ConfigStore.instance()
    node = to_plain(Config())
    for section, keys in GROUP_FIELDS.items():
        for key in keys:
            del node[section][key]
    store.store(name="rlplat_defaults", node=node)
    for name, options in curriculum_option_types().items():
        store.store(group="curriculum", name=name, node={"name": name, "options": to_plain(options())})
    # A curriculum given by import path brings its own options (``+curriculum.options.k=v``).
    store.store(group="curriculum", name=CUSTOM_CURRICULUM, node={"name": CUSTOM_CURRICULUM, "options": {}})


def _select_curriculum(overrides: list[str]) -> list[str]:
    """``curriculum.name=X`` means ``curriculum=X``: a built-in comes with its own typed default
    options, and a curriculum given by import path with none (not the default curriculum's)."""
    from curricula import curriculum_option_types

    keys = [o.partition("=")[0].lstrip("+") for o in overrides]
    if "curriculum" in keys or "curriculum.name" not in keys:
        return overrides
    out = []
    for o in overrides:
        key, _, value = o.partition("=")
        if key.lstrip("+") != "curriculum.name":
            out.append(o)
        elif value in curriculum_option_types():
            out.append(f"curriculum={value}")
        else:
            out += [f"curriculum={CUSTOM_CURRICULUM}", f"curriculum.name={value}"]
    return out


def _split_mappings(overrides: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Overrides for Hydra, and the mappings assigned to ``MAPPING_FIELDS`` (replaced afterwards)."""
    import yaml

    hydra_overrides, replace = [], {}
    for o in overrides:
        key, _, value = o.partition("=")
        if key in MAPPING_FIELDS:
            parsed = yaml.safe_load(value) if value.strip() else {}
            if not isinstance(parsed, dict):
                raise ConfigError(key, f"expected a mapping, found {value!r}.", f"write {key}={{name: value, ...}}.")
            replace[key] = parsed
        else:
            hydra_overrides.append(o)
    return hydra_overrides, replace


def _resume_dir(overrides: list[str]) -> Path | None:
    for o in overrides:
        if o.startswith("resume=") and o.split("=", 1)[1] not in ("", "null", "None"):
            return Path(o.split("=", 1)[1])
    return None


def _compose(overrides: list[str]) -> tuple[dict[str, Any], Path]:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    register_defaults()
    hydra_overrides, replace = _split_mappings(_select_curriculum(overrides))
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            composed = compose(config_name="config", overrides=hydra_overrides, return_hydra_config=True)
        # Only hydra.run.dir matters to rlplat; the rest of the hydra node needs a running job
        # to resolve, so it is dropped before resolving the run config.
        run_dir = Path(str(composed.hydra.run.dir))
        with open_dict(composed):
            del composed["hydra"]
            for key, value in replace.items():
                OmegaConf.update(composed, key, value, merge=False)
        data = OmegaConf.to_container(composed, resolve=True)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        raise compose_error(err, hydra_overrides) from err
    assert isinstance(data, dict)
    return {str(k): v for k, v in data.items()}, run_dir


def compose_error(err: Exception, overrides: list[str]) -> ConfigError:
    """Turn a Hydra/OmegaConf error into a ``ConfigError`` naming the override and the right key."""
    text = " ".join(str(err).split())
    keys = [o.split("=")[0].lstrip("+~") for o in overrides]
    # The override the message is about: the longest one it quotes (``curriculum`` is in
    # ``curriculum.options.x`` too).
    key = getattr(err, "full_key", None) or max((k for k in keys if f"'{k}" in text), key=len, default="overrides")
    if "Could not find" in text:
        return _missing_option_error(text, keys)
    if "No match in the defaults list" in text:
        return _not_a_group_error(str(key))
    if "not in struct" in text or "Could not override" in text or "Could not append" in text:
        return unknown_key_error(str(key), overrides)
    return ConfigError(str(key), text, "check the override's spelling and value (see rlplat/config/schema.py).")


def _missing_option_error(text: str, keys: list[str]) -> ConfigError:
    """``group=option`` (or ``+experiment=NAME``) naming an option that does not exist."""
    group = next((k for k in keys if f"'{k}/" in text), "experiment" if "experiment" in text else "overrides")
    options = sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))
    if group == "curriculum":
        from curricula import curriculum_option_types

        options = sorted(set(options) | set(curriculum_option_types()) | {CUSTOM_CURRICULUM})
    wanted = text.split(f"'{group}/", 1)[1].split("'", 1)[0] if f"'{group}/" in text else ""
    prefix = "+" if group == "experiment" else ""
    return ConfigError(group, f"there is no {group} '{wanted}'.{did_you_mean(wanted, options)}",
                       f"use one of: {', '.join(options)} ({prefix}{group}=NAME).")


def _not_a_group_error(key: str) -> ConfigError:
    """``section=value`` for a section that is not a config group (``grpo=fast``)."""
    groups = sorted(p.name for p in conf_dir().iterdir() if p.is_dir() and p.name != "experiment")
    return ConfigError(key, f"'{key}' is not a config group (groups: {', '.join(groups)}, and +experiment).",
                       f"set its fields instead, e.g. {key}.<field>=VALUE (see rlplat/config/schema.py).")


def unknown_key_error(dotted: str, overrides: list[str] | None = None) -> ConfigError:
    """``ConfigError`` for a key the schema does not have, with the nearest right key."""
    mapping = next((m for m in MAPPING_FIELDS if dotted.startswith(m + ".")), None)
    if mapping == "curriculum.options":
        return _curriculum_option_error(dotted, overrides or [])
    if mapping is not None:
        return _mapping_entry_error(dotted, mapping)
    cls: Any = Config
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        keys = field_keys(cls)
        if part not in keys:
            hint = did_you_mean(part, list(keys)) or _leaf_hint(part)
            return ConfigError(".".join(parts[:i + 1]), f"unknown key '{part}'.{hint}",
                               f"remove it or use one of: {', '.join(sorted(keys))}.")
        nxt = typing.get_type_hints(cls)[keys[part]]
        if not dataclasses.is_dataclass(nxt):
            return ConfigError(".".join(parts[:i + 1]), f"'{part}' is a value, not a section.",
                               f"set it directly, e.g. {'.'.join(parts[:i + 1])}=VALUE.")
        cls = nxt
    return ConfigError(dotted, "this key cannot be overridden here.", "check the override against rlplat/config/schema.py.")


def _curriculum_option_error(dotted: str, overrides: list[str]) -> ConfigError:
    """An option the chosen curriculum does not have (a built-in's options are typed)."""
    from curricula import curriculum_option_types

    chosen = "uniform"
    for o in overrides:
        key, _, value = o.partition("=")
        if key.lstrip("+") in ("curriculum", "curriculum.name"):
            chosen = value
    types_ = curriculum_option_types()
    if chosen not in types_:
        return _mapping_entry_error(dotted, "curriculum.options")
    names = [f.name for f in dataclasses.fields(types_[chosen])]
    option = dotted.split(".")[2]
    return ConfigError(f"curriculum.options.{option}", f"curriculum '{chosen}' has no option '{option}'."
                       f"{did_you_mean(option, names)}", f"use one of: {', '.join(sorted(names))}.")


def _mapping_entry_error(dotted: str, mapping: str) -> ConfigError:
    return ConfigError(dotted, f"{mapping} is a mapping whose entries are not known in advance.",
                       f"add an entry with +{dotted}=VALUE, or assign the whole mapping: {mapping}={{...}}.")


def _leaf_hint(word: str) -> str:
    """`` Did you mean 'grpo.total_steps'?`` for a field name given without its section."""
    leaves = _dotted_fields(Config)
    exact = [d for d in leaves if d.rsplit(".", 1)[-1] == word]
    if exact:
        return f" Did you mean '{exact[0]}'?"
    return did_you_mean(word, leaves)


def _dotted_fields(cls: Any, prefix: str = "") -> list[str]:
    out = []
    hints = typing.get_type_hints(cls)
    for key, name in field_keys(cls).items():
        path = f"{prefix}{key}"
        tp = hints[name]
        out += _dotted_fields(tp, path + ".") if dataclasses.is_dataclass(tp) else [path]
    return out


def saved_config(run_dir: Path) -> Config:
    """The config a run directory's ``config.yaml`` holds (what a stage's Ray job runs with)."""
    import yaml

    return to_config(yaml.safe_load((run_dir / "config.yaml").read_text()))


def _load_resumed(run_dir: Path, overrides: list[str]) -> tuple[Config, Path]:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    saved = run_dir / "config.yaml"
    if not saved.exists():
        raise ConfigError("resume", f"{run_dir} holds no config.yaml, so it is not an rlplat run directory.",
                          "pass the directory of the run to continue (the one holding config.yaml and checkpoints/).")
    overrides = _resume_run_dir(run_dir, overrides)
    try:
        merged = OmegaConf.merge(OmegaConf.load(saved), OmegaConf.from_dotlist(overrides))
    except OmegaConfBaseException as err:
        raise ConfigError("overrides", " ".join(str(err).split()), "check the overrides given with resume.") from err
    data = OmegaConf.to_container(merged, resolve=True)
    assert isinstance(data, dict)
    data.update({"resume": str(run_dir), "run_dir": str(run_dir)})
    return to_config({str(k): v for k, v in data.items()}), run_dir


def _resume_run_dir(run_dir: Path, overrides: list[str]) -> list[str]:
    """Drop ``hydra.run.dir`` when it names the resumed directory; refuse any other ``hydra.*``."""
    kept = []
    for o in overrides:
        key, _, value = o.partition("=")
        if key.lstrip("+") == "hydra.run.dir" and Path(value).resolve() == run_dir.resolve():
            continue
        if key.lstrip("+").startswith("hydra."):
            raise ConfigError(key.lstrip("+"), f"resume={run_dir} continues that run in its own directory, so "
                              f"'{o}' cannot apply.", f"drop it (or give hydra.run.dir={run_dir}); start a new run "
                              "in another directory without resume=.")
        kept.append(o)
    return kept
