"""NAS stage: Puzzle (and optionally FFN Fusion) from the input model to a cheaper DeciLM child.

One pass, as in the Puzzle paper (arXiv 2411.19146) at small scale:

1. the parent's residual stream on calibration text (``distill.data``, else the built-in task);
2. the block library: at every layer each attention and FFN variant of ``nas`` learns its parent
   sub-block by local distillation (``rlplat.models.bld``), one Ray task per layer, in parallel;
   the same task scores every (attention, FFN) pair by the KL of the parent with only that block
   replaced, on held-out text;
3. costs: each sub-block variant's forward timed on one thread, in one task, one after another
   (like for like), and its parameters counted (``rlplat.models.costs``);
4. the search: the mixed-integer program of ``rlplat.algo.puzzle`` under the latency and
   parameter budgets, with greedy and random baselines (and diverse alternatives) reported;
5. the child assembled, optionally FFN-fused (``rlplat.models.fusion``), saved as DeciLM;
6. vLLM generation throughput and per-token latency of parent and child (and of the child before
   fusion, when fusion fired), same prompts, batch and lengths, in alternating rounds; and
   (``nas.pass_rate``) the held-out pass rate of parent and child, as GRPO's evaluation measures it.

Writes ``nas_model/`` (the child, with the parent's tokenizer) and ``stages/nas/result.json`` (and,
when fusion fired, ``stages/nas/unfused_model/``). The
manifest's artifact ``nas_parent`` names the parent: a following ``distill`` stage uses it as its
teacher when ``distill.teacher_path`` is unset (Puzzle's global distillation), and ``grpo`` trains the
child as it trains any model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch

from rlbase import atomic_write
from rlplat.algo.puzzle import Choice, Infeasible, SearchProblem, solve_greedy, solve_mip, solve_random
from rlplat.config.schema import Config, NASConfig
from rlplat.distributed.waits import PhaseTimeout
from rlplat.models.bld import (
    NO_ATTENTION,
    NO_FFN,
    LayerLibrary,
    assemble,
    block_inputs,
    build_layer_library,
    final_logits,
    kl_per_token,
    replacement_kl,
)
from rlplat.models.costs import block_cost, measure_blocks_seconds, model_params, serving_costs
from rlplat.models.decilm import DeciBlock, HeteroLlamaForCausalLM, from_llama, load_decilm, save_decilm
from rlplat.models.decilm_format import (
    AttentionConfig,
    BlockConfig,
    FFNConfig,
    HeteroLlamaConfig,
    block_to_decilm,
    is_decilm,
)
from rlplat.models.fusion import ffn_only_runs, fuse_runs, run_dependency, split_run
from rlplat.models.hf import copy_tokenizer
from rlplat.runtime.stage_actors import StageActors
from rlplat.stages.base import NAS_PARENT, StageContext, StageManifest, stage_dir
from rlplat.stages.held_out import PARENT_PASS_RATE, PASS_RATE, held_out_pass_rate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerResult:
    """What one layer's task returns: its library and each block variant's replacement KL."""

    library: LayerLibrary
    scores: dict[BlockConfig, float]


class NASStage:
    """Puzzle search (and FFN Fusion) into ``nas_model/``."""

    name = "nas"
    config_sections = ("seed", "model", "nas", "distill.data", "distill.text_field", "distill.max_tokens",
                       "data", "rollout", "reward", "grpo.eval_prompts", "grpo.eval_samples")

    def run(self, ctx: StageContext) -> StageManifest:
        cfg, n = ctx.cfg, ctx.cfg.nas
        torch.manual_seed(cfg.seed)
        parent = load_parent(ctx.model_path)
        calibration, held_out = calibration_rows(cfg, ctx.model_path)
        results, latency = block_library(parent, calibration, held_out, n, cfg.seed, cfg.timeouts.train_s)
        problem, options = search_problem(parent, results, latency, n)
        choice = solve_mip(problem)
        unfused = assemble(parent, [options[i][v] for i, v in enumerate(choice)], [r.library for r in results])
        fused_runs = fusion_runs(unfused, calibration, n.fuse_threshold)
        child = fuse_runs(unfused, fused_runs) if fused_runs else unfused
        paths = {"parent": ctx.model_path, "child": save_child(child, ctx.run_dir / "nas_model", ctx.model_path)}
        if fused_runs:  # the child before fusion, served beside it: what fusion itself gains
            paths["unfused"] = save_child(unfused, stage_dir(ctx.run_dir, self.name) / "unfused_model", ctx.model_path)
        with torch.no_grad():
            parent_logits = parent(held_out).logits
            kl = {name: kl_per_token(parent_logits, m(held_out).logits)
                  for name, m in (("child", child), ("unfused", unfused)) if name in paths}
        throughput, pass_rates = serve_models(cfg, paths, held_out[:, :8].tolist())
        result = {
            "parent": ctx.model_path, "child": paths["child"],
            "parent_pass_rate": pass_rates.get("parent"), "child_pass_rate": pass_rates.get("child"),
            "throughput_ratio": throughput["ratio"], "throughput": throughput,
            "param_ratio": model_params(child.config) / model_params(parent.config), "kl_to_parent": kl["child"],
            "heldout_pass_rate": pass_rates, "block_configs": [block_to_decilm(b) for b in child.config.blocks],
            "fused_runs": [list(r) for r in fused_runs],
            "fusion": fusion_report(unfused, child, fused_runs, kl, throughput) if fused_runs else None,
            "analytic": {who: asdict(serving_costs(m.config, n.throughput_prompts, cfg.rollout.max_model_len))
                         for who, m in (("parent", parent), ("child", child))},
            "search": search_report(problem, choice, diverse_alternatives(problem, choice, n), cfg.seed),
            "bld_losses": [{_variant_name(v): [losses[0], losses[-1]] for v, losses in r.library.losses.items()}
                           for r in results],
        }
        atomic_write(stage_dir(ctx.run_dir, self.name) / "result.json", json.dumps(result, indent=2))
        log.info("nas: child %s: throughput x%.2f, parameters x%.2f, KL to the parent %.4f", paths["child"],
                 throughput["ratio"], result["param_ratio"], kl["child"])
        return StageManifest(self.name, paths["child"], ctx.model_path, artifacts={NAS_PARENT: ctx.model_path},
                             metrics=manifest_metrics(result))


def save_child(model: HeteroLlamaForCausalLM, directory: Path, parent_path: str) -> str:
    """``model`` saved as a DeciLM directory with the parent's tokenizer; its path."""
    out = save_decilm(model, directory)
    copy_tokenizer(Path(parent_path), out)
    return str(out)


def manifest_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The NAS manifest's metrics, from ``result.json``'s content (pure). ``eval/pass_rate`` is the
    child's, the stage's output model measured as every stage's is."""
    metrics = {"nas/throughput_ratio": result["throughput_ratio"], "nas/param_ratio": result["param_ratio"],
               "nas/kl_to_parent": result["kl_to_parent"]}
    if result["fusion"] is not None:
        metrics["nas/fusion_throughput_ratio"] = result["fusion"]["throughput_ratio"]
        metrics["nas/kl_to_parent_unfused"] = result["fusion"]["kl_to_parent_unfused"]
    if result["parent_pass_rate"] is not None:
        metrics[PARENT_PASS_RATE] = result["parent_pass_rate"]
    if result["child_pass_rate"] is not None:
        metrics["nas/child_pass_rate"] = metrics[PASS_RATE] = result["child_pass_rate"]
    return metrics


def block_library(parent: HeteroLlamaForCausalLM, calibration: torch.Tensor, held_out: torch.Tensor, n: NASConfig,
                  seed: int, deadline_s: float) -> tuple[list[LayerResult], dict[AttentionConfig | FFNConfig, float]]:
    """Every layer's library and scores (one Ray task per layer, logged as each ends), then the
    timed cost of every sub-block variant offered. Each wait ends within ``deadline_s``
    (``timeouts.train_s``): a task that does not finish in time raises ``PhaseTimeout``."""
    cal_states, held_states = block_inputs(parent, calibration), block_inputs(parent, held_out)
    blocks = parent.config.blocks
    c = parent.config
    variants = [layer_variants(blocks[i], i, c.num_attention_heads, c.hidden_size, n) for i in range(len(blocks))]
    log.info("nas: block library for %d layers (%d block variants in all), one Ray task per layer",
             len(variants), sum(len(a) * len(f) for a, f in variants))
    parent_ref, logits_ref = ray.put(parent), ray.put(final_logits(parent, held_states[-1]).detach())
    pending = {_layer_task.remote(parent_ref, i, cal_states[i], held_states[i], logits_ref, attn, ffn, n, seed): i
               for i, (attn, ffn) in enumerate(variants)}
    done: dict[int, LayerResult] = {}
    while len(done) < len(variants):
        waiting = [r for r in pending if pending[r] not in done]
        ready, _ = ray.wait(waiting, num_returns=1, timeout=deadline_s)
        if not ready:
            raise PhaseTimeout("train", [f"layer {pending[r]}" for r in waiting], deadline_s)
        done[pending[ready[0]]] = ray.get(ready[0], timeout=deadline_s)
        log.info("nas: layer %d's library done (%d/%d)", pending[ready[0]], len(done), len(variants))
    results = [done[i] for i in range(len(variants))]
    offered = {v: None for r in results for v in (*r.library.attention, *r.library.ffn)}
    return results, ray.get(_latency_task.remote(parent.config, list(offered), n), timeout=deadline_s)


def load_parent(path: str) -> HeteroLlamaForCausalLM:
    """The parent as rlplat's heterogeneous module: a DeciLM directory as it is, a Llama converted."""
    model = load_decilm(path) if is_decilm(path) else from_llama(path)
    return model.float().eval()


def calibration_rows(cfg: Config, model_path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Calibration and held-out token rows ``[N, nas.seq_len]``: the distillation stage's texts
    (``distill.data``, else the built-in task's), concatenated and cut into rows."""
    from transformers import AutoTokenizer

    from rlplat.stages.distill import distill_sequences

    n = cfg.nas
    train, held = distill_sequences(cfg, AutoTokenizer.from_pretrained(model_path))
    rows = []
    for seqs, count in ((train, n.calibration_rows), (held or train[::-1], n.eval_rows)):
        tokens = [t for s in seqs for t in (*s.prompt_ids, *s.completion_ids)]
        usable = min(count, len(tokens) // n.seq_len)
        if usable < 1:
            raise ValueError(f"nas: {len(tokens)} tokens of text make no row of nas.seq_len={n.seq_len}")
        rows.append(torch.tensor(tokens[:usable * n.seq_len]).view(usable, n.seq_len))
    return rows[0], rows[1]


def layer_variants(parent: BlockConfig, index: int, num_heads: int, hidden_size: int,
                   n: NASConfig) -> tuple[list[AttentionConfig], list[FFNConfig]]:
    """The attention and FFN variants offered at layer ``index``, the parent's own first. A KV-head
    count is offered where it merges the parent's KV heads (fewer, dividing them); an ``ffn_mult``
    where its width is below the parent's (a wider FFN saves nothing)."""
    attention = [parent.attention]
    if parent.attention.kind == "full" and parent.attention.n_heads_in_group:
        parent_kv = num_heads // parent.attention.n_heads_in_group
        attention += [AttentionConfig("full", num_heads // kv) for kv in sorted(set(n.kv_heads))
                      if kv < parent_kv and parent_kv % kv == 0]
    if n.no_attention and index > 0 and NO_ATTENTION not in attention:
        attention.append(NO_ATTENTION)  # layer 0 keeps one: vLLM's DeciLM needs it before any FFN
    ffn = [parent.ffn]
    if parent.ffn.kind == "full":
        narrower = [FFNConfig("full", ffn_mult=m) for m in sorted(set(n.ffn_mults))]
        ffn += [f for f in narrower if f.width(hidden_size) < parent.ffn.width(hidden_size)]
    if n.no_ffn and NO_FFN not in ffn:
        ffn.append(NO_FFN)
    return attention, ffn


@ray.remote(num_cpus=1)
def _layer_task(parent: HeteroLlamaForCausalLM, index: int, inputs: torch.Tensor, held_input: torch.Tensor,
                parent_logits: torch.Tensor, attention: list[AttentionConfig], ffn: list[FFNConfig],
                n: NASConfig, seed: int) -> LayerResult:
    """BLD at one layer, then the replacement KL of every (attention, FFN) pair."""
    torch.set_num_threads(1)
    library = build_layer_library(parent, index, inputs, attention, ffn, n.bld_steps, n.bld_lr, n.bld_batch_size,
                                  seed)
    scores = {BlockConfig(a, f): replacement_kl(parent, index, BlockConfig(a, f), library, held_input, parent_logits)
              for a, f in product(attention, ffn)}
    return LayerResult(library, scores)


@ray.remote(num_cpus=1)
def _latency_task(config: HeteroLlamaConfig, variants: list[AttentionConfig | FFNConfig],
                  n: NASConfig) -> dict[AttentionConfig | FFNConfig, float]:
    """Seconds of each sub-block variant's forward (its cost does not depend on the weights, nor
    on the layer in a model of one width), all timed in one task, in turn ("none" costs 0)."""
    torch.manual_seed(0)
    modules = {v: DeciBlock(config, BlockConfig(v, NO_FFN) if isinstance(v, AttentionConfig)
                            else BlockConfig(NO_ATTENTION, v)).float().eval()
               for v in variants if v.kind != "none"}
    seconds = measure_blocks_seconds(modules, config.hidden_size, n.latency_batch, n.latency_tokens)
    return {v: seconds.get(v, 0.0) for v in variants}


def search_problem(parent: HeteroLlamaForCausalLM, results: list[LayerResult],
                   latency: dict[AttentionConfig | FFNConfig, float],
                   n: NASConfig) -> tuple[SearchProblem, list[list[BlockConfig]]]:
    """The MIP's grid (layers x block variants: scores, and the resources seconds, parameters and
    KV-cache bytes per token) and its budgets (the parent's use scaled by ``nas.speedup``,
    ``nas.max_param_ratio``, ``nas.max_kv_ratio``); the block variant behind each column of each layer."""
    options = [sorted(r.scores, key=lambda b: (b != parent.config.blocks[i], str(b))) for i, r in enumerate(results)]
    scores = np.full((len(options), max(len(o) for o in options)), np.inf)
    costs = {name: np.zeros_like(scores) for name in ("latency", "params", "kv_bytes")}
    for i, (opts, r) in enumerate(zip(options, results, strict=True)):
        for v, block in enumerate(opts):
            scores[i, v] = r.scores[block]
            analytic = block_cost(parent.config, block, 0)
            costs["latency"][i, v] = latency[block.attention] + latency[block.ffn]
            costs["params"][i, v] = analytic.params
            costs["kv_bytes"][i, v] = analytic.kv_bytes_per_token
    scale = {"latency": 1.0 / n.speedup, "params": n.max_param_ratio, "kv_bytes": n.max_kv_ratio}
    budgets = {name: float(c[:, 0].sum()) * scale[name] for name, c in costs.items()}
    return SearchProblem(scores, costs, budgets), options


def diverse_alternatives(problem: SearchProblem, best: Choice, n: NASConfig) -> list[Choice]:
    """Up to ``nas.alternatives`` more solutions, each sharing at most ``nas.max_shared`` of the
    layers with every earlier one (fewer when the budgets allow no more)."""
    found = [best]
    shared = int(n.max_shared * len(best))
    for _ in range(n.alternatives):
        try:
            found.append(solve_mip(problem, avoid=found, max_shared=shared))
        except Infeasible:
            break
    return found[1:]


def search_report(problem: SearchProblem, best: Choice, alternatives: list[Choice], seed: int) -> dict[str, Any]:
    """Each solver's choice, total score and resource use, beside the budgets."""
    def entry(choice: Choice | None) -> dict[str, Any] | None:
        if choice is None:
            return None
        return {"choice": list(choice), "score": problem.total(choice), "usage": problem.usage(choice)}

    def attempt(solve: Callable[[], Choice]) -> Choice | None:
        try:
            return solve()
        except Infeasible:
            return None

    return {"budgets": dict(problem.budgets), "parent_usage": problem.usage((0,) * len(best)),
            "mip": entry(best), "greedy": entry(attempt(lambda: solve_greedy(problem))),
            "random": entry(attempt(lambda: solve_random(problem, samples=2000, seed=seed))),
            "alternatives": [entry(a) for a in alternatives]}


def fusion_runs(child: HeteroLlamaForCausalLM, input_ids: torch.Tensor, threshold: float | None) -> list[tuple[int, int]]:
    """The runs FFN Fusion fuses: the child's attention-free runs, split where the dependency on
    ``input_ids`` exceeds ``threshold`` (none when it is unset)."""
    if threshold is None:
        return []
    streams = block_inputs(child, input_ids)
    return [sub for run in ffn_only_runs(child.config.blocks)
            for sub in split_run(run, run_dependency(child, run, streams[run[0]]), threshold)]


def _variant_name(variant: AttentionConfig | FFNConfig) -> str:
    return json.dumps(asdict(variant), sort_keys=True)


def serve_models(cfg: Config, paths: dict[str, str],
                 prompts: list[list[int]]) -> tuple[dict[str, Any], dict[str, float | None]]:
    """The models of ``paths`` ("parent", "child" and, when fusion fired, "unfused") served at
    once, an engine each on a device of its own: each one's vLLM greedy throughput and per-token
    latency, and (``nas.pass_rate``) parent's and child's held-out pass rate.

    A round times, model after model, the same ``nas.throughput_prompts`` prompts in one batch
    (throughput: new tokens per second) and the first prompt alone (latency: seconds per new
    token), exactly ``nas.throughput_tokens`` new tokens each; ``nas.throughput_repeats`` rounds after
    a warm-up (start-up excluded). Rounds alternate the models, so that what else the machine does
    falls on each alike; medians are reported, and the child's throughput over the parent's. The
    pass rate is GRPO's evaluation (same prompts, samples, seeds and reward: its per-request seeds
    make it independent of the number of engines; None when ``grpo.eval_prompts`` holds no prompt
    out).
    """
    n = cfg.nas
    batch = [prompts[i % len(prompts)] for i in range(n.throughput_prompts)]
    one_device = replace(cfg, cluster=replace(cfg.cluster, devices_per_node=cfg.rollout.tensor_parallel_size,
                                              num_nodes=1, colocate=True, rollout_devices=0))
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    single: dict[str, list[float]] = {name: [] for name in paths}
    with contextlib.ExitStack() as stack:
        actors = {name: stack.enter_context(StageActors(one_device, path, 0.0, learners=False,
                                                        scorer=n.pass_rate and name != "unfused"))
                  for name, path in paths.items()}
        for group in actors.values():
            group.rollout_group.greedy(batch[:2], 4)  # warm-up, not timed
        for _ in range(n.throughput_repeats):
            for name, group in actors.items():
                seconds[name].append(_timed(group.rollout_group.greedy, batch, n.throughput_tokens))
                single[name].append(_timed(group.rollout_group.greedy, batch[:1], n.throughput_tokens))
        pass_rates = {name: held_out_pass_rate(cfg, paths[name], group) for name, group in actors.items()
                      if n.pass_rate and name != "unfused"}
    tokens = len(batch) * n.throughput_tokens
    rate = {name: tokens / statistics.median(s) for name, s in seconds.items()}
    latency = {name: statistics.median(s) / n.throughput_tokens for name, s in single.items()}
    return {"tokens_per_s": rate, "seconds_per_token": latency, "ratio": rate["child"] / rate["parent"],
            "seconds": seconds, "single_seconds": single, "prompts": len(batch),
            "new_tokens": n.throughput_tokens}, pass_rates


def _timed(greedy: Callable[[list[list[int]], int], object], prompts: list[list[int]], tokens: int) -> float:
    """Seconds of one ``greedy(prompts, tokens)``."""
    start = time.perf_counter()
    greedy(prompts, tokens)
    return time.perf_counter() - start


def fusion_report(unfused: HeteroLlamaForCausalLM, fused: HeteroLlamaForCausalLM, runs: list[tuple[int, int]],
                  kl: dict[str, float], throughput: dict[str, Any]) -> dict[str, Any]:
    """What FFN Fusion changed: layers, KL to the parent and vLLM speed, the child before fusion
    against after (``kl``: "unfused" and "child"; ``throughput`` as ``serve_models`` returns it,
    with an "unfused" model)."""
    rate, latency = throughput["tokens_per_s"], throughput["seconds_per_token"]
    return {"runs": [list(r) for r in runs], "layers_before": len(unfused.config.blocks),
            "layers_after": len(fused.config.blocks), "kl_to_parent_unfused": kl["unfused"],
            "kl_to_parent_fused": kl["child"], "tokens_per_s": {"unfused": rate["unfused"], "fused": rate["child"]},
            "seconds_per_token": {"unfused": latency["unfused"], "fused": latency["child"]},
            "throughput_ratio": rate["child"] / rate["unfused"], "latency_ratio": latency["child"] / latency["unfused"]}
