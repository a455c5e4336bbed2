"""Compose the run config with Hydra (compose API) and convert it to the typed ``Config``.

The compose API is used instead of ``@hydra.main`` so that composition errors (a misspelt key, a
missing experiment) become our one-paragraph ``ConfigError`` with exit code 2, and so that the run
directory is created by rlplat (``hydra.run.dir=DIR`` still chooses it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rlplat.config.convert import to_config
from rlplat.config.errors import ConfigError, did_you_mean
from rlplat.config.schema import Config


def conf_dir() -> Path:
    """The ``conf/`` directory (``RLPLAT_CONF_DIR`` overrides it)."""
    env = os.environ.get("RLPLAT_CONF_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "conf"


def load(overrides: list[str]) -> tuple[Config, Path]:
    """Typed config and run directory for command-line ``overrides``.

    ``resume=DIR`` starts from ``DIR/config.yaml`` (the run's own resolved config) and applies the
    other overrides on top, so a resumed run is the same run unless told otherwise.
    """
    resume = _resume_dir(overrides)
    if resume is not None:
        return _load_resumed(resume, [o for o in overrides if not o.startswith("resume=")])
    data, run_dir = _compose(overrides)
    return to_config({**data, "run_dir": str(run_dir)}), run_dir


# Free-form mappings of the schema: their keys are not known in advance, so an override such as
# ``data.file.path=x.jsonl`` is turned into Hydra's add-or-override form ``++data.file.path=x.jsonl``,
# and ``reward.components={format: 1.0}`` replaces the whole mapping (Hydra would merge it).
FREE_FORM = ("data.file", "reward.components", "reward.options", "curriculum.options")


def _free_form(overrides: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Split overrides into Hydra's and the free-form mappings replaced after composition."""
    import yaml

    hydra_overrides, replace = [], {}
    for o in overrides:
        key, _, value = o.partition("=")
        if key in FREE_FORM:
            replace[key] = yaml.safe_load(value) if value.strip() else {}
        elif key.startswith(tuple(f"{k}." for k in FREE_FORM)):
            hydra_overrides.append(f"++{o}")
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
    hydra_overrides, replace = _free_form(overrides)
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
        raise _compose_error(err, overrides) from err
    assert isinstance(data, dict)
    return {str(k): v for k, v in data.items()}, run_dir


def _compose_error(err: Exception, overrides: list[str]) -> ConfigError:
    """Turn a Hydra/OmegaConf error into a ``ConfigError`` naming the override."""
    text = " ".join(str(err).split())
    key = getattr(err, "full_key", None) or next((o.split("=")[0].lstrip("+~") for o in overrides
                                                  if o.split("=")[0].lstrip("+~") in text), "overrides")
    if "experiment" in text and "Could not find" in text:
        names = sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))
        return ConfigError("experiment", text, f"use one of: {', '.join(names)} (+experiment=NAME).")
    if "not in struct" in text or "Could not override" in text:
        return unknown_key_error(str(key))
    return ConfigError(str(key), text, "check the override's spelling and value (see rlplat/config/schema.py).")


def unknown_key_error(dotted: str) -> ConfigError:
    """``ConfigError`` for a key the schema does not have, with a did-you-mean hint."""
    import dataclasses
    import typing

    cls: Any = Config
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        names = {f.name for f in dataclasses.fields(cls)}
        where = ".".join(parts[:i + 1])
        if part not in names:
            return ConfigError(where, f"unknown key '{part}'.{did_you_mean(part, names)}",
                               f"remove it or use one of: {', '.join(sorted(names))}.")
        nxt = typing.get_type_hints(cls)[part]
        if not dataclasses.is_dataclass(nxt):
            break
        cls = nxt
    return ConfigError(dotted, "this key cannot be overridden here.", "check the override against rlplat/config/schema.py.")


def register_defaults() -> None:
    """Store every schema default as the ``rlplat_defaults`` config, under ``conf/config.yaml``.

    The YAML files then need to list only what they change, and any schema field can be
    overridden from the command line without a ``+``; unknown keys are still rejected.
    """
    from hydra.core.config_store import ConfigStore

    from rlplat.config.convert import to_plain

    ConfigStore.instance().store(name="rlplat_defaults", node=to_plain(Config()))


def _load_resumed(run_dir: Path, overrides: list[str]) -> tuple[Config, Path]:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    saved = run_dir / "config.yaml"
    if not saved.exists():
        raise ConfigError("resume", f"{run_dir} holds no config.yaml, so it is not an rlplat run directory.",
                          "pass the directory of the run to continue (the one holding config.yaml and checkpoints/).")
    try:
        merged = OmegaConf.merge(OmegaConf.load(saved), OmegaConf.from_dotlist(overrides))
    except OmegaConfBaseException as err:
        raise ConfigError("overrides", " ".join(str(err).split()), "check the overrides given with resume.") from err
    data = OmegaConf.to_container(merged, resolve=True)
    assert isinstance(data, dict)
    data.update({"resume": str(run_dir), "run_dir": str(run_dir)})
    return to_config({str(k): v for k, v in data.items()}), run_dir
