"""SFT stage: supervised fine-tuning with the reasoning toggle in the system prompt (LN §4).

Rows follow the Llama-Nemotron post-training dataset (``rlplat.data.sft``, validated at preflight
with file and row numbers), or (``sft.source=synthetic``) pair on/off answers of the built-in
task. The loss falls on the response tokens only; ``sft.pack_tokens`` packs several examples into
each row with attention kept within each; ``sft.eval_rows`` held-out rows measure toggle
compliance and per-mode pass rates afterwards (the manifest's metrics). Writes ``sft_model/``, a
complete Hugging Face directory, for the next stage.
"""

from __future__ import annotations

from rlplat.config.schema import Config
from rlplat.data.sft import SFTExample, read_sft_examples, to_train_sequences
from rlplat.data.synthetic import split_problems, toggle_examples
from rlplat.runtime.stage_actors import StageActors
from rlplat.runtime.supervised import train_supervised
from rlplat.runtime.toggle_eval import measure_toggle
from rlplat.stages.base import SFT_BAR_KEYS, StageContext, StageManifest, stage_metrics
from rlplat.stages.held_out import PASS_RATE, held_out_pass_rate


class SFTStage:
    """Supervised fine-tuning on ``sft.data``; its manifest names the fine-tuned model directory."""

    name = "sft"
    config_sections = ("seed", "model", "learner", "cluster", "rollout", "reward", "sft", "data.synthetic")
    starts_engines = True  # the reasoning-toggle evaluation generates (rlplat.stages.checks)

    def preflight(self, cfg: Config) -> None:
        """Before Ray (``rlplat.stages.checks``): ``sft.data`` is given and every row is usable."""
        from rlplat.config.errors import ConfigError
        from rlplat.data.datasets import DataError
        from rlplat.data.sft import check_sft_file

        if cfg.sft.source != "file":
            return
        if not cfg.sft.data:
            raise ConfigError("sft.data", "the sft stage needs a data file.", "set sft.data to a .jsonl, .json "
                              "or .parquet file of input/output/reasoning rows (rlplat/data/sft.py).")
        try:
            check_sft_file(cfg.sft.data, cfg.sft.eval_rows)
        except DataError as err:
            raise ConfigError("sft.data", str(err), "correct the file (rlplat/data/sft.py states the rules).") from err

    def run(self, ctx: StageContext) -> StageManifest:
        from transformers import AutoTokenizer

        cfg = ctx.cfg
        tokenizer = AutoTokenizer.from_pretrained(ctx.model_path)
        train, held_out = sft_examples(cfg)
        out = ctx.run_dir / "sft_model"
        metrics = train_supervised(cfg, ctx.model_path, to_train_sequences(train, tokenizer), out,
                                   stage_metrics(ctx, self.name, cfg.sft.steps, SFT_BAR_KEYS))
        if held_out:
            with StageActors(cfg, str(out), cfg.sft.lr, learners=False) as actors:
                metrics.update(measure_toggle(cfg, str(out), held_out, actors))
                if cfg.grpo.eval_stages:  # on the same engines: no start of its own
                    rate = held_out_pass_rate(cfg, str(out), actors)
                    metrics.update({} if rate is None else {PASS_RATE: rate})
        return StageManifest(self.name, str(out), ctx.model_path, metrics=metrics)


def sft_examples(cfg: Config) -> tuple[list[SFTExample], list[SFTExample]]:
    """The rows to train on and the ``sft.eval_rows`` held out: the file's last rows, or (source
    synthetic) paired rows of the warm-start problems and of as many held-out problems."""
    if cfg.sft.source == "synthetic":
        s, n = cfg.data.synthetic, cfg.sft.eval_rows
        train, rl = split_problems(s, cfg.seed)
        return toggle_examples(train), toggle_examples(rl[:(n + 1) // 2])[:n]
    assert cfg.sft.data is not None  # preflight refused the stage without a data file
    examples = read_sft_examples(cfg.sft.data)
    cut = len(examples) - cfg.sft.eval_rows
    return examples[:cut], examples[cut:]
