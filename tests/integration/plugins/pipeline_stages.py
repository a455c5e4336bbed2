"""Stages of the pipeline tests: one that hands its input on, one that fails."""

from __future__ import annotations

from rlplat.stages.base import StageContext, StageManifest


class PassOnStage:
    """Hands its input model to the next stage (no actors): a second, quick stage."""

    name = "pass_on"

    def run(self, ctx: StageContext) -> StageManifest:
        return StageManifest(self.name, ctx.model_path, ctx.model_path, metrics={"pass_on/upstream": len(ctx.upstream)})


class FirstStage(PassOnStage):
    """The same, under another name: a pipeline of two quick stages."""

    name = "first"


class FailingStage:
    """Raises, as a stage with a bug would."""

    name = "failing"

    def run(self, ctx: StageContext) -> StageManifest:
        raise RuntimeError("boom: the failing test stage")
