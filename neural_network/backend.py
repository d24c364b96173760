"""Which kernel SpikingJelly's neurons run on.

The original code asked SpikingJelly 0.0.0.0.x for ``backend="cupy"``. SpikingJelly 2.0.0 has no CuPy code and
its neurons take no ``backend=`` argument: a neuron picks its kernel from the device of its input tensor. On
the CPU there is one kernel (``torch``). On CUDA it tries, in order, its native CUDA extension (``cuda``), a
Triton kernel (``triton``) and the plain PyTorch reference (``torch``). The choice can only be forced with the
environment variables ``SJ_LIF_CUDA_IMPLEMENTATION`` and ``SJ_IF_CUDA_IMPLEMENTATION``, which SpikingJelly
reads once, when its kernels are first imported. This module maps the ``--backend`` option onto them.

``--backend cupy`` is kept as an alias of ``cuda`` (the native CUDA kernel that replaced the CuPy one), so
command lines written for the original code keep working.
"""

from __future__ import annotations

import importlib.util
import os

import torch

BACKENDS = ("auto", "torch", "cuda", "cupy", "triton")
_ENV_VARS = ("SJ_LIF_CUDA_IMPLEMENTATION", "SJ_IF_CUDA_IMPLEMENTATION")


class BackendError(ValueError):
    """A neuron backend was asked for that cannot run on this machine or device."""


def resolve_device(choice: str) -> torch.device:
    """``--device``: auto (cuda if available, else cpu), cuda (an error without a CUDA device) or cpu."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise BackendError("--device cuda was asked for but no CUDA device is available; use --device auto or cpu")
    return torch.device(choice)


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """Check that ``backend`` can run on ``device`` and return SpikingJelly's name for it.

    Returns one of ``auto``, ``torch``, ``cuda``, ``triton``. ``auto`` means: SpikingJelly's own choice, i.e.
    ``torch`` on the CPU and the fastest available kernel on CUDA.
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    name = "cuda" if backend == "cupy" else backend
    device_type = torch.device(device).type
    if name in ("cuda", "triton") and device_type != "cuda":
        raise BackendError(
            f"--backend {backend} needs a CUDA device, but the device is {device_type}; "
            "use --backend auto or --backend torch"
        )
    if name == "triton" and importlib.util.find_spec("triton") is None:
        raise BackendError("--backend triton needs the 'triton' package; install it or use --backend auto")
    return name


def select_backend(backend: str, device: torch.device | str) -> str:
    """Resolve ``backend`` and make SpikingJelly use it for LIF and IF neurons.

    Must run before the first spiking forward pass on CUDA: SpikingJelly reads the choice once per process.
    If its kernels were already imported, the choice is written into its selector as well.
    """
    name = resolve_backend(backend, device)
    for var in _ENV_VARS:
        os.environ[var] = name
    for module_name in ("spikingjelly._ops.lif", "spikingjelly._ops.if_"):
        module = importlib.import_module(module_name)
        selection = getattr(module, "_selection", None)
        if selection is not None and getattr(selection, "_requested", name) != name:
            selection._requested = name
            selection._selections.clear()
            selection._compiled_selections.clear()
    return name
