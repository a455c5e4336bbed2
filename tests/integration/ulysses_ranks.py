"""One rank of ``test_sequence_parallel.py``'s attention check, spawned twice: a module of its own so
that the spawned processes import torch, DeepSpeed and rlplat's model code, not Ray and the learners."""

from __future__ import annotations

from rlplat.types import TrainSequence


def attention_rank(rank: int, port: int, models: list[tuple[str, str]], seqs: list[TrainSequence],
                   out: dict[str, float]) -> None:
    """Rank ``rank`` of two: each model unsplit and split, on padded and packed rows; rank 0 records
    the largest log-prob and entropy differences and relative gradient difference (gradients summed
    over ranks)."""
    import os

    import torch

    from rlplat.algo import entropy_from_logits, token_logprobs
    from rlplat.algo.batching import collate
    from rlplat.algo.packing import collate_packed
    from rlplat.distributed.cluster import torch_extensions_dir
    from rlplat.learner import ulysses
    from rlplat.models.decilm import load_decilm
    from rlplat.models.hf import load_causal_lm

    # DeepSpeed's CPU collective op as set-up built it for the learners (else a JIT build, ~25 s).
    os.environ.update(DS_ACCELERATOR="cpu", TORCHDYNAMO_DISABLE="1", GLOO_SOCKET_IFNAME="lo",
                      TORCH_EXTENSIONS_DIR=torch_extensions_dir())
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo")  # Ulysses' all-to-all runs on deepspeed.comm
    sp = ulysses.sequence_groups(2, 2, rank)
    load = {"hf": lambda p: load_causal_lm(p, torch.float32), "decilm": load_decilm}
    for kind, path in models:
        for layout, mb in (("padded", collate(seqs, 0)), ("packed", collate_packed(seqs, 24, 0))):
            whole, split = load[kind](path), load[kind](path)
            ulysses.install(split, sp)
            logits = whole(input_ids=mb.input_ids, attention_mask=mb.attention_mask, position_ids=mb.position_ids).logits
            lp_whole = mb.per_sequence(token_logprobs(logits[:, :-1], mb.input_ids[:, 1:]))
            ent_whole = mb.per_sequence(entropy_from_logits(logits[:, :-1].detach()))
            shard = ulysses.shard_positions(mb, sp, 0)
            logits = split(input_ids=shard.input_ids, attention_mask=shard.attention_mask,
                           position_ids=shard.position_ids).logits
            lp_split = mb.per_sequence(ulysses.gather_positions(token_logprobs(logits, shard.targets), sp, shard))
            ent_split = mb.per_sequence(ulysses.gather_positions(entropy_from_logits(logits.detach()), sp, shard))
            (lp_whole * mb.loss_mask).sum().backward()
            (lp_split * mb.loss_mask).sum().backward()
            grad = 0.0
            for p, q in zip(whole.parameters(), split.parameters(), strict=True):
                summed = q.grad.clone()
                torch.distributed.all_reduce(summed)
                grad = max(grad, float((summed - p.grad).abs().max() / p.grad.abs().max().clamp(min=1e-12)))
            if rank == 0:
                out[f"{kind}/{layout}/logprobs"] = float((lp_whole - lp_split)[mb.loss_mask].abs().max())
                out[f"{kind}/{layout}/entropy"] = float((ent_whole - ent_split)[mb.loss_mask].abs().max())
                out[f"{kind}/{layout}/grads"] = grad
    torch.distributed.destroy_process_group()
