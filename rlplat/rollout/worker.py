"""RolloutWorker: a Ray actor that owns one vLLM engine.

It generates ``n`` samples per prompt and returns token ids, text and the per-token logprobs of the
sampled tokens, each sample stamped with the weight version that produced it. New weights arrive
as a ``SyncManifest`` (see ``rlplat.sync``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlplat.config.schema import RolloutConfig, SamplingConfig
from rlplat.data.chat import stop_token_ids
from rlplat.faults import ArmedFaults, FaultKind, inject
from rlplat.models.decilm_format import is_decilm
from rlplat.sync.plan import BUCKETS, IPC
from rlplat.sync.transport import bucket_paths, mark_aborted, remove_files, write_bucket
from rlplat.telemetry import LENGTH_BOUNDARIES, MetricTags, count, observe
from rlplat.types import Generation, GenerationRequest, LoadReport, Sample, SyncManifest


@dataclass(frozen=True)
class EngineSpec:
    """What a RolloutWorker needs to build its engine."""

    model_path: str
    dtype: str
    device: str
    rollout: RolloutConfig
    seed: int
    # CPU only: cores this engine's OpenMP threads bind to ("0-1", "1"), or "auto".
    cpu_bind: str = "auto"
    # GPU with tensor parallelism > 1: the placement-group bundles of this engine's TP workers and
    # each worker's GPU share (vLLM's Ray executor places one worker per bundle).
    bundles: tuple[int, ...] = ()
    worker_gpu_share: float = 1.0
    # Testing aid (``faults.inject`` prompt faults): prompt uids that make this engine fail.
    crash_prompts: dict[str, FaultKind] = field(default_factory=dict)
    # Tags of the Ray metrics this engine exports (response lengths, tokens); None: none.
    metric_tags: MetricTags | None = None
    # vLLM weight-transfer backend (``rlplat.sync.plan.transfer_backend``): bucket files or CUDA IPC.
    weight_backend: str = BUCKETS


def cpu_head_sizes() -> list[int]:
    """Attention head sizes vLLM's CPU backend runs (another size fails at the first generation)."""
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    return list(CPUAttentionBackend.get_supported_head_sizes())


def engine_env(spec: EngineSpec) -> dict[str, str | None]:
    """Environment vLLM reads at import time, set before the first ``import vllm`` (None: unset)."""
    env: dict[str, str | None] = {"VLLM_ALLOW_INSECURE_SERIALIZATION": "1"}
    if spec.rollout.tensor_parallel_size == 1:
        # In-process engine: a killed actor takes its engine with it, and weight loads need no IPC.
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    elif spec.bundles:
        # TP > 1 (GPU): vLLM's Ray executor starts one worker per bundle of the actor's placement
        # group (captured by the actor's scheduling strategy). Not exercised by the CPU test suite.
        env["VLLM_RAY_BUNDLE_INDICES"] = ",".join(map(str, spec.bundles))
        env["VLLM_RAY_PER_WORKER_GPUS"] = str(spec.worker_gpu_share)
        # The engine actor holds no GPU of its own (its TP workers do), so Ray gave it an empty
        # CUDA_VISIBLE_DEVICES, and vLLM would find no GPU in it: unset it, as vLLM's own RL
        # examples do for engines inside placement groups.
        env["CUDA_VISIBLE_DEVICES"] = None
    if spec.device == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(spec.rollout.cpu_kvcache_gib)
        env["VLLM_CPU_OMP_THREADS_BIND"] = spec.cpu_bind
        if spec.rollout.enforce_eager:
            # vLLM's sampler torch.compiles small helpers (the sampled token's rank) even in eager
            # mode; on CPU Inductor compiles them at each engine's first generation, 2.5 s alone
            # and about 11 s with two engines on two cores, for kernels no faster than eager ones.
            env["TORCHDYNAMO_DISABLE"] = "1"
    return env


def _generation_eos(model_path: str) -> int | list[int] | None:
    """``eos_token_id`` of the model's ``generation_config.json`` (None without one)."""
    path = Path(model_path) / "generation_config.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
    return value if isinstance(value, int | list) else None


def _batching_args(spec: EngineSpec) -> dict[str, Any]:
    """Chunked-prefill settings (see ``RolloutConfig.chunked_prefill``)."""
    r = spec.rollout
    chunked = r.chunked_prefill if r.chunked_prefill is not None else spec.device != "cpu"
    budget = r.max_num_batched_tokens or (None if chunked else r.max_model_len * 16)
    args: dict[str, Any] = {"enable_chunked_prefill": chunked}
    if budget:
        args["max_num_batched_tokens"] = budget
    return args


class RolloutWorker:
    """Owns a vLLM ``LLM``; created as a Ray actor by ``RolloutGroup``."""

    def __init__(self, spec: EngineSpec, rank: int) -> None:
        """Import vLLM (the heavy import stays inside the actor process); ``start`` builds the engine."""
        for key, value in engine_env(spec).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        import ray
        import vllm  # noqa: F401 - imported while other actors start, used by ``start``

        self.rank = rank
        self.spec = spec
        self.version = 0
        # What vLLM freed at ``sleep`` and has not allocated again: "weights", "kv_cache".
        self.asleep: set[str] = set()
        self.node_id = ray.get_runtime_context().get_node_id()
        self.faults = ArmedFaults(f"rollout worker {rank}")

    def start(self) -> dict[str, Any]:
        """Build the vLLM engine; returns ``info``."""
        from vllm import LLM

        from rlplat.rollout import transfer

        transfer.register()
        spec, r = self.spec, self.spec.rollout
        self.llm = LLM(
            model=spec.model_path,
            # A DeciLM child's config class is the directory's own configuration_decilm.py (local
            # file, no hub access): vLLM serves it with its native DeciLMForCausalLM.
            trust_remote_code=is_decilm(spec.model_path),
            dtype=spec.dtype,
            tensor_parallel_size=r.tensor_parallel_size,
            gpu_memory_utilization=r.gpu_memory_utilization,
            max_model_len=r.max_model_len,
            # FP8 kernels exist on GPU only; a CPU engine computes with the FP8-rounded weights the
            # sync sends (dequantized by rlplat.rollout.transfer), which emulates FP8 weight numerics.
            quantization="fp8" if r.precision == "fp8" and spec.device == "gpu" else None,
            enforce_eager=r.enforce_eager,
            enable_prefix_caching=r.enable_prefix_caching,
            **_batching_args(spec),
            enable_sleep_mode=spec.device == "gpu" and r.sleep_between_phases,
            seed=spec.seed,
            # Logprobs of the distribution actually sampled from (after temperature/top_p),
            # which is what the PPO ratio needs.
            logprobs_mode="processed_logprobs",
            weight_transfer_config={"backend": spec.weight_backend},
            distributed_executor_backend="ray" if r.tensor_parallel_size > 1 else None,
        )
        # No rendezvous for either backend; IPC: one handle per tensor (not vLLM's packed buffer).
        self.llm.init_weight_transfer_engine({"init_info": {"packed": False} if spec.weight_backend == IPC else {}})
        self.stop_ids = list(stop_token_ids(self.llm.get_tokenizer(), _generation_eos(spec.model_path)))
        return self.info()

    def info(self) -> dict[str, Any]:
        """Node id, pid and current weight version (for placement checks and health)."""
        return {"node_id": self.node_id, "pid": os.getpid(), "version": self.version, "rank": self.rank}

    def heartbeat(self) -> float:
        """Liveness: answered from the actor's ``health`` concurrency group, beside any long call."""
        return time.time()

    def arm_fault(self, phase: str, kind: FaultKind) -> None:
        """Testing aid (``faults.inject``): fail with ``kind`` at the start of the next ``phase`` call."""
        self.faults.arm(phase, kind)

    def generate(self, requests: list[GenerationRequest], n: int, sampling: SamplingConfig) -> Generation:
        """Sample ``n`` completions per request: one list of samples per request, in order."""
        from vllm import SamplingParams

        self.faults.fire("generate")
        for req in requests:
            inject(self.spec.crash_prompts.get(req.uid), f"rollout worker {self.rank} on prompt {req.uid}")
        self._ensure_awake()
        params = [
            SamplingParams(n=n, temperature=sampling.temperature, top_p=sampling.top_p,
                           max_tokens=sampling.max_new_tokens, logprobs=0, seed=req.seed,
                           # Where the model's turn ends: the template's end of turn is not always
                           # among the EOS ids vLLM stops at by itself.
                           stop_token_ids=self.stop_ids)
            for req in requests
        ]
        prompts = [{"prompt_token_ids": list(req.prompt_token_ids)} for req in requests]
        start = time.perf_counter()
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        seconds = time.perf_counter() - start
        groups: list[list[Sample] | None] = [self._to_samples(out) for out in outputs]
        if self.spec.metric_tags is not None:
            lengths = [len(s.token_ids) for g in groups if g for s in g]
            observe("rlplat_response_length_tokens", lengths, self.spec.metric_tags, LENGTH_BOUNDARIES,
                    "tokens per generated response, observed by the rollout worker")
            count("rlplat_generated_tokens", sum(lengths), self.spec.metric_tags, "tokens generated by the rollout workers")
        return Generation(groups, seconds)

    def _to_samples(self, out: Any) -> list[Sample]:
        samples = []
        for comp in out.outputs:
            # Each logprobs entry maps the sampled token id to its Logprob (logprobs=0).
            lps = tuple(float(d[t].logprob) for t, d in zip(comp.token_ids, comp.logprobs, strict=True))
            samples.append(Sample(token_ids=tuple(comp.token_ids), text=comp.text, logprobs=lps,
                                  weights_version=self.version, finish_reason=str(comp.finish_reason)))
        return samples

    def greedy(self, prompt_token_ids: list[list[int]], max_tokens: int) -> list[list[int]]:
        """Greedy completions (used to check that synced weights equal the learner's)."""
        from vllm import SamplingParams

        self._ensure_awake()
        params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompt_token_ids], params,
                                 use_tqdm=False)
        return [list(o.outputs[0].token_ids) for o in outs]

    def load_weights(self, manifest: SyncManifest) -> LoadReport:
        """Load weights version ``manifest.version`` from its bucket files (/dev/shm, or fetched
        from the object store). A sleeping engine gets its weights memory back first; its KV cache
        waits for ``wake``."""
        self.faults.fire("sync")
        start = time.perf_counter()
        paths, own_copy = self._local_paths(manifest)
        try:
            # Streamed: wait for the files the learners are still writing (a fetched copy is whole).
            wait_s = 0.0 if own_copy else manifest.stream_wait_s
            self._transfer({"specs": manifest.specs, "paths": paths, "wait_s": wait_s}, manifest.version)
        finally:
            if own_copy:
                remove_files(paths)
        return LoadReport(manifest.version, time.perf_counter() - start, manifest.nbytes,
                          sum(len(spec.entries) for spec in manifest.specs))

    def load_ipc(self, update_info: dict[str, Any], version: int, nbytes: int) -> LoadReport:
        """Load weights ``version`` through CUDA IPC (``sync.backend=ipc``): ``update_info`` holds
        handles to the learners' tensors on each GPU (``rlplat.sync.ipc``); vLLM copies from the
        one on this engine's GPU."""
        self.faults.fire("sync")
        start = time.perf_counter()
        self._transfer(update_info, version)
        return LoadReport(version, time.perf_counter() - start, nbytes, len(update_info["names"]))

    def _transfer(self, update_info: dict[str, Any], version: int) -> None:
        """One update through vLLM's weight-transfer protocol (start, one chunk, finish); the
        backend chosen at start (``rlplat.rollout.transfer``, or vLLM's ``ipc``) reads the chunk in
        every engine worker process."""
        self._wake("weights")
        self.llm.start_weight_update()
        self.llm.update_weights({"update_info": update_info})
        self.llm.finish_weight_update(str(version))
        # With rollout.enable_prefix_caching, cached KV was computed by the old weights: drop it (a
        # no-op without prefix caching; a sleeping engine's KV was dropped by its sleep already).
        self.llm.reset_prefix_cache()
        self.version = version

    def abort_load(self, paths: Sequence[str]) -> None:
        """Stop a streamed load of ``paths`` that is waiting for files (their export failed)."""
        mark_aborted(paths)

    def _local_paths(self, manifest: SyncManifest) -> tuple[tuple[str, ...], bool]:
        """Bucket files readable on this node; fetches them from the object store if needed."""
        if self.node_id in manifest.shm_nodes:
            return manifest.shm_paths, False
        if not manifest.refs:
            raise RuntimeError(f"rollout worker {self.rank}: no shm copy on node {self.node_id} "
                               "and no object-store copy in the manifest")
        import ray

        shm_dir = os.path.dirname(manifest.shm_paths[0]) if manifest.shm_paths else "/dev/shm"
        paths = bucket_paths(shm_dir, f"recv{os.getpid()}", manifest.version, len(manifest.specs))
        for path, ref in zip(paths, manifest.refs, strict=True):
            write_bucket(path, ray.get(ref))
        return paths, True

    def sleep(self) -> None:
        """GPU colocation: free engine memory while the learner trains (level 2: weights too)."""
        if self.spec.device == "gpu" and self.spec.rollout.sleep_between_phases and not self.asleep:
            self.llm.sleep(level=2)
            self.asleep = {"weights", "kv_cache"}

    def wake(self) -> None:
        """Allocate the KV cache again after a sleep, once the weights are loaded and the learners
        have handed the device back (a no-op for an engine that is awake)."""
        self._wake("kv_cache")

    def _wake(self, tag: str) -> None:
        if tag in self.asleep:
            self.llm.wake_up(tags=[tag])
            self.asleep.discard(tag)

    def _ensure_awake(self) -> None:
        if self.asleep:
            raise RuntimeError(f"engine is asleep ({', '.join(sorted(self.asleep))}): load new weights and wake "
                               "it before generating")
