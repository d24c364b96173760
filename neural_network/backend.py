"""Which kernel SpikingJelly's neurons run on.

The original code asked SpikingJelly 0.0.0.0.x for ``backend="cupy"``. SpikingJelly 2.0.0 has no CuPy code and
its neurons take no ``backend=`` argument: a neuron picks its kernel from the device of its input tensor. On
the CPU there is one kernel (``torch``). On CUDA it tries, in order, its native CUDA extension (``cuda``), a
Triton kernel (``triton``) and the plain PyTorch reference (``torch``). The choice can only be forced with the
environment variables ``SJ_LIF_CUDA_IMPLEMENTATION`` and ``SJ_IF_CUDA_IMPLEMENTATION``, which SpikingJelly
reads once, when its kernels are first imported. This module maps the ``--backend`` option onto them.

``--backend cupy`` is kept as an alias of ``cuda`` (the native CUDA kernel that replaced the CuPy one), so
command lines written for the original code keep working.

Which kernels run is not known from what is installed: the SpikingJelly wheel on PyPI ships without its native
operators, so ``cuda`` fails at the first forward pass. :func:`choose_backend` therefore tries each kernel once on
the device (:func:`probe_kernels`: a tiny forward and backward pass of an LIF and an IF layer), resolves ``auto``
to the first one that runs in SpikingJelly's own order of speed (native CUDA, Triton, the PyTorch reference), and
refuses a named kernel that does not run with one line that names those that do. The chosen kernel is then forced
(never ``auto``), so that SpikingJelly cannot fall back to a slower one unseen.
"""

from __future__ import annotations

import importlib.util
import os

import torch

BACKENDS = ("auto", "torch", "cuda", "cupy", "triton")
_ENV_VARS = ("SJ_LIF_CUDA_IMPLEMENTATION", "SJ_IF_CUDA_IMPLEMENTATION")
#: SpikingJelly's kernels on CUDA, fastest first (its own order of preference); the CPU has ``torch`` only.
CUDA_KERNELS = ("cuda", "triton", "torch")
NATIVE_HINT = ("SpikingJelly's native CUDA kernels come only with a build from source: install its source with "
               "SJ_BUILD_NATIVE_CUDA=1 pip install --no-build-isolation, with a CUDA toolkit that matches torch's")


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


def _force(name: str) -> None:
    """Make SpikingJelly use kernel ``name`` (or ``auto``) for LIF and IF neurons from the next call on."""
    for var in _ENV_VARS:
        os.environ[var] = name
    for module_name in ("spikingjelly._ops.lif", "spikingjelly._ops.if_"):
        selection = getattr(importlib.import_module(module_name), "_selection", None)
        if selection is not None:
            selection._requested = name
            selection._selections.clear()
            selection._compiled_selections.clear()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def probe_kernels(device: torch.device | str) -> dict[str, str | None]:
    """Try each of SpikingJelly's kernels for ``device`` once: a multi-step LIF and IF layer, forward and backward
    on a tiny input, checked against the PyTorch reference. Returns, fastest first, kernel -> None where it runs,
    else the first line of its error. Leaves SpikingJelly on ``auto``."""
    from spikingjelly.activation_based import neuron, surrogate

    device = torch.device(device)
    kernels = CUDA_KERNELS if device.type == "cuda" else ("torch",)
    generator = torch.Generator().manual_seed(0)
    x = (torch.rand((4, 2, 8), generator=generator) * 3).to(device)
    outcome: dict[str, str | None] = {}
    answers: dict[str, list[torch.Tensor]] = {}
    for name in kernels:
        _force(name)
        try:
            out = []
            for layer in (neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m"),
                          neuron.IFNode(surrogate_function=surrogate.ATan(), step_mode="m")):
                inputs = x.clone().requires_grad_(True)
                spikes = layer.to(device)(inputs)
                spikes.sum().backward()
                out.append(spikes.detach().cpu())
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            outcome[name], answers[name] = None, out
        except Exception as error:  # noqa: BLE001 - any failure means: this kernel does not run here
            outcome[name] = _first_line(error)
    _force("auto")
    reference = answers.get("torch")
    for name, out in answers.items():
        if reference is not None and not all(torch.equal(a, b) for a, b in zip(out, reference)):
            outcome[name] = "its spikes differ from the PyTorch reference kernel's on the probe"
    return outcome


def choose_backend(backend: str, device: torch.device | str) -> tuple[str, dict[str, str | None]]:
    """``--backend`` made concrete on ``device``: (the kernel, the probe of every kernel). ``auto``: the fastest
    kernel that runs; a named kernel that does not run is a :class:`BackendError` (one line naming those that do
    and how to get the native ones). The kernel is selected (:func:`select_backend`) before returning."""
    resolve_backend(backend, device)  # unknown names, CUDA kernels without CUDA, triton without its package
    name = "cuda" if backend == "cupy" else backend
    probe = probe_kernels(device)
    running = [kernel for kernel, error in probe.items() if error is None]
    if not running:
        raise BackendError("no SpikingJelly neuron kernel runs on this device: "
                           + "; ".join(f"{k}: {e}" for k, e in probe.items()))
    if name == "auto":
        name = running[0]
    elif probe.get(name) is not None:
        hint = f"; {NATIVE_HINT}" if name == "cuda" else ""
        raise BackendError(f"--backend {backend} does not run here ({probe[name]}); kernels that run: "
                           f"{', '.join(running)} (--backend auto takes {running[0]}){hint}")
    select_backend(name, device)
    CHOSEN.update(backend=backend, kernel=name, probe=probe)
    return name, probe


#: The latest choice of :func:`choose_backend` in this process (what a run records in config.json and run.log);
#: emptied by :func:`forget_choice` for a run without spiking neurons.
CHOSEN: dict = {}


def forget_choice() -> None:
    CHOSEN.clear()


def describe_choice(choice: dict) -> str:
    """One line for run.log and reports: the kernel, and what the probe said of the others."""
    others = "; ".join(f"{k}: {'runs' if e is None else e}" for k, e in choice["probe"].items()
                       if k != choice["kernel"])
    return (f"neuron kernel {choice['kernel']} (--backend {choice['backend']})"
            + (f"; probed: {others}" if others else ""))


#: The cuBLAS workspace setting that makes its matrix products deterministic (CUDA's documentation).
CUBLAS_WORKSPACE = ":4096:8"


def apply_numeric_regime(deterministic: bool, device: torch.device | str) -> dict:
    """The floating-point regime of a run on ``device`` (docs/GPU.md); returns the settings it leaves in force.

    CUDA, default: PyTorch's defaults with cuDNN's deterministic algorithms (no autotuning): float32 matrix
    products, convolutions that cuDNN may run in TF32. Reductions may be ordered differently from run to run
    (atomics), so two runs, or graphs and eager, agree to rounding, not bit for bit.
    CUDA, ``deterministic``: torch.use_deterministic_algorithms (an operation without a deterministic kernel is an
    error), ``CUBLAS_WORKSPACE_CONFIG`` (set here unless already set: it must precede the first cuBLAS call), TF32
    off for matrix products and convolutions: the same inputs give the same bits.
    CPU: nothing to set; its kernels are deterministic for a given thread count."""
    if torch.device(device).type != "cuda":
        return {"device": "cpu"}
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = not deterministic  # PyTorch's default: True
    torch.backends.cuda.matmul.allow_tf32 = False  # PyTorch's default
    return {"deterministic": deterministic, "cudnn_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}
