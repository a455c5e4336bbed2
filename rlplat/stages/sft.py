"""SFT stage: supervised fine-tuning on a file, with the reasoning toggle in the system prompt (LN §4).

Rows follow the Llama-Nemotron post-training dataset (``rlplat.data.sft``, validated at preflight
with file and row numbers); the loss falls on the response tokens only; ``sft.pack_tokens`` packs
several examples into each row with attention kept within each; ``sft.eval_rows`` held-out rows
measure toggle compliance afterwards (in the manifest's metrics). Writes ``sft_model/``, a complete
Hugging Face directory, for the next stage.
"""

from __future__ import annotations

from rlplat.data.sft import read_sft_examples, to_train_sequence
from rlplat.runtime.supervised import train_supervised
from rlplat.runtime.toggle_eval import measure_toggle
from rlplat.stages.base import StageContext, StageManifest


class SFTStage:
    """Supervised fine-tuning on ``sft.data``; its manifest names the fine-tuned model directory."""

    name = "sft"

    def run(self, ctx: StageContext) -> StageManifest:
        from transformers import AutoTokenizer

        cfg = ctx.cfg
        assert cfg.sft.data is not None  # preflight refused the stage without a data file
        tokenizer = AutoTokenizer.from_pretrained(ctx.model_path)
        examples = read_sft_examples(cfg.sft.data)
        cut = len(examples) - cfg.sft.eval_rows
        train, held_out = examples[:cut], examples[cut:]
        out = ctx.run_dir / "sft_model"
        metrics = train_supervised(cfg, ctx.model_path, [to_train_sequence(ex, tokenizer) for ex in train], out, "SFT")
        if held_out:
            metrics.update(measure_toggle(cfg, str(out), held_out))
        return StageManifest(self.name, str(out), ctx.model_path, metrics=metrics)
