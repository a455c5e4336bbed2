"""Weighted combination of named rewards, and ``build_reward`` (config -> reward).

The combined score is ``sum(weight_i * score_i)``. Each component's own score is kept in
``details[name]`` (what the pool aggregates into per-step ``reward/<name>/mean`` metrics), its
diagnostics under ``details["<name>/<key>"]``. ``correct`` is the designated accuracy component's
``correct`` (the first component unless ``accuracy`` names another), so ``pass_rate`` keeps meaning
"the verifier accepted the answer" even when a format bonus is added.

Config accepted by ``build_reward`` (plain data, so it pickles into pool workers)::

    "math"                                            # one component named "math", weight 1
    {"_target_": "my_pkg.rewards.fn", "k": 1}         # one component from an import path
    {"components": {"math": 1.0, "format": 0.1},     # or a list of names (weight 1 each)
     "accuracy": "math",                              # whose `correct` is the combination's
     "modules": ["my_pkg.my_rewards"],                # imported first, for @register_reward
     "options": {"math": {...}, "code": {...}},       # per-component keyword options
     "on_error": "zero"}                              # default policy of every component
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rewards.base import OnError, Reward, RewardError, RewardInput, RewardOutput, validate_on_error
from rewards.registry import get_reward, import_modules


@dataclass(frozen=True)
class Component:
    """One named, weighted part of a combination."""

    name: str
    reward: Reward
    weight: float


class CombinedReward(Reward):
    """Weighted sum of named component rewards.

    Args:
        components: The parts, in order.
        accuracy: Name of the component whose ``correct`` is reported (default: the first).
        on_error: Policy of the combination itself (components apply their own).
    """

    name = "combined"

    def __init__(self, components: Sequence[Component], *, accuracy: str | None = None, on_error: OnError = "zero"):
        super().__init__(on_error=on_error)
        if not components:
            raise RewardError("a reward combination needs at least one component")
        names = [c.name for c in components]
        if len(set(names)) != len(names):
            raise RewardError(f"duplicate component names in {names}")
        if accuracy is not None and accuracy not in names:
            raise RewardError(f"accuracy component {accuracy!r} is not one of the components {names}")
        self.components = tuple(components)
        self.accuracy = accuracy or names[0]
        self.name = "+".join(names)

    def warmup(self) -> None:
        for c in self.components:
            c.reward.warmup()

    def _score(self, inp: RewardInput) -> RewardOutput:
        return self._combine([c.reward.score(inp) for c in self.components])

    def score_batch(self, inps: Sequence[RewardInput]) -> list[RewardOutput]:
        """Each component scores the whole batch (lets batched rewards such as ``judge`` batch)."""
        per_component = [c.reward.score_batch(inps) for c in self.components]
        return [self._combine([outs[i] for outs in per_component]) for i in range(len(inps))]

    def _combine(self, outs: list[RewardOutput]) -> RewardOutput:
        details: dict[str, Any] = {}
        errors = []
        total = 0.0
        for comp, out in zip(self.components, outs, strict=True):
            total += comp.weight * out.score
            details[comp.name] = float(out.score)
            for key, value in out.details.items():
                details[f"{comp.name}/{key}"] = value
            if out.error:
                errors.append(f"{comp.name}: {out.error}")
        acc = outs[[c.name for c in self.components].index(self.accuracy)]
        return RewardOutput(
            score=total,
            correct=bool(acc.correct),
            timed_out=any(o.timed_out for o in outs),
            error="; ".join(errors) or None,
            details=details,
        )


def build_reward(config: str | Mapping[str, Any] | Reward) -> CombinedReward:
    """Build the (combined) reward a training run scores with.

    Args:
        config: A reward name, a ``{"_target_": ...}`` mapping, or the full combination mapping
            described in the module docstring. Plain data only, so it can cross to pool workers.

    Returns:
        A ``CombinedReward``; a single reward becomes a one-component combination so that
        ``details`` always carries the per-component scores.

    Raises:
        RewardError: On any configuration mistake (before a sample is scored).
    """
    if isinstance(config, Reward):
        return config if isinstance(config, CombinedReward) else CombinedReward([Component(config.name, config, 1.0)])
    if isinstance(config, str):
        return CombinedReward([Component(config, get_reward(config), 1.0)])
    if not isinstance(config, Mapping):
        raise RewardError(f"reward config must be a name or a mapping, got {type(config).__name__}")
    if "components" not in config:
        if "_target_" not in config:
            raise RewardError("reward config needs 'components' (or '_target_'); got keys " + str(sorted(config)))
        reward = get_reward(config)
        return CombinedReward([Component(reward.name, reward, 1.0)])
    return _build_combination(config)


def _build_combination(config: Mapping[str, Any]) -> CombinedReward:
    unknown = set(config) - {"components", "accuracy", "modules", "options", "on_error"}
    if unknown:
        raise RewardError(f"unknown reward config keys {sorted(unknown)}")
    import_modules(config.get("modules"))
    on_error = validate_on_error(config.get("on_error", "zero"))
    options = dict(config.get("options") or {})
    comps = config["components"]
    weights = dict.fromkeys(comps, 1.0) if isinstance(comps, (list, tuple)) else dict(comps)
    unknown_opts = set(options) - set(weights)
    if unknown_opts:
        raise RewardError(f"options given for {sorted(unknown_opts)}, which are not components {sorted(weights)}")
    # A top-level on_error is every component's default; per-component options override it.
    base = {"on_error": on_error} if "on_error" in config else {}
    parts = [_component(name, spec, {**base, **(options.get(name) or {})}) for name, spec in weights.items()]
    return CombinedReward(parts, accuracy=config.get("accuracy"), on_error=on_error)


def _component(name: str, spec: Any, options: dict[str, Any]) -> Component:
    """``spec`` is a weight, or a mapping with ``weight`` and an optional ``_target_``/options."""
    if isinstance(spec, Mapping):
        spec = dict(spec)
        weight = spec.pop("weight", 1.0)
        target = spec.pop("_target_", None)
        reward = get_reward({"_target_": target, **spec, **options} if target else name, **({} if target else {**spec, **options}))
    else:
        weight = spec
        reward = get_reward(name, **options)
    try:
        weight = float(weight)
    except (TypeError, ValueError):
        raise RewardError(f"weight of reward component {name!r} must be a number, got {weight!r}") from None
    return Component(name, reward, weight)
