"""What a benchmark says about the machine it ran on: one definition, in every table and JSON alike."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def memory_gib() -> float | None:
    """Physical memory in GiB (``MemTotal``), None where the system does not say."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3, 1)
    except (ValueError, OSError, AttributeError):
        return None


def version(package: str) -> str | None:
    """The installed version of ``package`` (its distribution's metadata; nothing is imported), None if absent."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_commit(repo: Path = REPO) -> str | None:
    """The checkout's commit (short), with ``+dirty`` where tracked files differ from it; None outside git."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode:
            return None
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def gpu() -> str | None:
    """The first CUDA device's name, None without one (torch is asked only where it is already importable)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def describe() -> dict:
    """The machine block of every benchmark's JSON.

    Keys: ``cpu`` (model name), ``logical_cpus`` (os.cpu_count), ``cores_available`` (this process's CPU
    affinity: what it may use), ``torch_threads``, ``cpu_bf16`` (native bfloat16 units), ``memory_gib``,
    ``load_avg_1min`` (at the start: a busy machine reads slower), ``gpu``, ``python``, ``torch``, ``monai``,
    ``onnxruntime``, ``monaifrac`` (versions) and ``commit`` (this checkout's).
    """
    import sys

    import torch

    from monaifrac.data.prepare import available_cpus
    from monaifrac.inferers import cpu_bf16_supported

    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "cores_available": available_cpus(),
            "torch_threads": torch.get_num_threads(), "cpu_bf16": cpu_bf16_supported(), "memory_gib": memory_gib(),
            "load_avg_1min": load, "gpu": gpu(), "python": sys.version.split()[0], "torch": torch.__version__,
            "monai": version("monai"), "onnxruntime": version("onnxruntime"), "monaifrac": version("monaifrac"),
            "commit": git_commit()}


def one_line(m: dict) -> str:
    """The machine block as the first line of a benchmark's printout."""
    parts = [f"{m['cpu']}, {m['cores_available']} of {m['logical_cpus']} logical CPUs available",
             f"{m['memory_gib']} GiB" if m.get("memory_gib") else None,
             f"torch {m['torch']} ({m['torch_threads']} threads)", f"monai {m['monai']}",
             f"onnxruntime {m['onnxruntime']}" if m.get("onnxruntime") else "no onnxruntime",
             f"bf16 units {'yes' if m['cpu_bf16'] else 'no'}", f"GPU {m['gpu']}" if m.get("gpu") else "no GPU",
             f"load average {m['load_avg_1min']} at start" if m.get("load_avg_1min") is not None else None,
             f"commit {m['commit']}" if m.get("commit") else None]
    return "machine: " + ", ".join(p for p in parts if p)
