"""What machine a report was measured on, and the file name it is written under."""

from __future__ import annotations

import os
import platform
import re
from importlib.metadata import PackageNotFoundError, version


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


def slug(text: str) -> str:
    text = re.sub(r"\((r|tm)\)|\b(cpu|processor|\d+-core)\b", " ", text, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine_info(device: str) -> dict:
    """CPU, threads, memory, GPU (on CUDA), load (the machine may be shared), library versions."""
    import psutil
    import torch

    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "device": device,
        "gpu": gpu,
        "cuda": torch.version.cuda if gpu else None,
        "python": platform.python_version(),
        **{name: package_version(name) for name in ("torch", "spikingjelly", "numpy", "ale-py", "triton")},
        "platform": platform.platform(),
    }


def report_stem(info: dict) -> str:
    """e.g. ``amd-epyc_2t_cpu_torch2.13.0_sj2.0.0`` (CPU, torch threads, GPU or cpu, library versions)."""
    gpu = slug(info["gpu"]) if info.get("gpu") else "cpu"
    return (f"{slug(info['cpu'])}_{info['torch_threads']}t_{gpu}_torch{info['torch'].split('+')[0]}"
            f"_sj{info['spikingjelly']}")
