"""What machine a report was measured on, and the file name it is written under."""

from __future__ import annotations

import os
import platform
import re


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


def machine_info(device) -> dict:
    """CPU model, logical CPUs, torch threads, GPU (if the device is CUDA), library versions."""
    import numpy
    import spikingjelly
    import torch

    try:
        from importlib.metadata import version

        sj_version = version("spikingjelly")
    except Exception:  # pragma: no cover - metadata missing
        sj_version = getattr(spikingjelly, "__version__", "unknown")
    try:
        import ale_py

        ale_version = ale_py.__version__
    except Exception:  # pragma: no cover
        ale_version = "unknown"
    device = str(device)
    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = os.cpu_count()
    try:
        import psutil

        memory_gb = round(psutil.virtual_memory().total / 1e9, 1)
    except Exception:  # pragma: no cover
        memory_gb = None
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "torch_threads": torch.get_num_threads(),
        "memory_gb": memory_gb,
        "device": device,
        "gpu": gpu,
        "cuda": torch.version.cuda if gpu else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "spikingjelly": sj_version,
        "numpy": numpy.__version__,
        "ale_py": ale_version,
        "platform": platform.platform(),
    }


def report_stem(info: dict) -> str:
    """e.g. ``amd-epyc_2t_cpu_torch2.13.0_sj2.0.0`` (CPU, torch threads, GPU or cpu, library versions)."""
    gpu = slug(info["gpu"]) if info.get("gpu") else "cpu"
    torch_version = info["torch"].split("+")[0]
    return f"{slug(info['cpu'])}_{info['torch_threads']}t_{gpu}_torch{torch_version}_sj{info['spikingjelly']}"
