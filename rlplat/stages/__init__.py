"""Pipeline stages, one file each, and the registry the config's ``stages=[...]`` names resolve in.

Built-ins: ``warmstart`` (supervised pass on the built-in task), ``sft`` (supervised fine-tuning
with the reasoning toggle), ``distill`` (knowledge distillation, or continued pretraining),
``prefilter`` (the paper's data filtering), ``nas`` (Puzzle NAS and FFN Fusion) and ``grpo``. A stage of your own is a class with ``name`` and ``run(ctx) ->
StageManifest`` (``rlplat.stages.base``), registered with ``@STAGES.register("name")`` in a module
you import, or named by its import path in ``stages=[...]``; its optional ``preflight(cfg)`` method
checks its own files at launch, before Ray starts (``rlplat.stages.checks``).
"""

from rlbase import Registry

STAGES = Registry("stage", builtins={
    "warmstart": "rlplat.stages.warmstart:WarmStartStage",
    "sft": "rlplat.stages.sft:SFTStage",
    "distill": "rlplat.stages.distill:DistillStage",
    "prefilter": "rlplat.stages.prefilter:PrefilterStage",
    "nas": "rlplat.stages.nas:NASStage",
    "grpo": "rlplat.stages.grpo:GRPOStage",
})

__all__ = ["STAGES"]
