"""--cuda_graphs: Agent.act and Agent.update replayed as captured CUDA graphs (on a CUDA device only).

The eager path launches every kernel of a forward pass (and of a backward pass and an Adam step) from Python, one
by one; for the batch-1 forward of acting and for the many small kernels of a spiking network the launches, not
the arithmetic, set the time. Here each of the two is captured once into a CUDA graph and then replayed:

* update: :meth:`Agent.loss` on static device buffers, its backward and the Adam step (``capturable=True``: its
  step count is a device tensor) in one graph. The capture follows a few warm-up steps on a side stream (they pick
  and compile the neuron kernels and build Adam's state); what the warm-up did to the weights and to Adam's state
  is undone, so the first replay is the first update. A replaced optimizer state or learning rate (a resumed run,
  --learning_rate) is captured again.
* act: the no-grad forward of a batch of frame stacks into a static Q output, one graph per batch size (a power
  of two: 1 for acting while learning, up to the number of evaluation games played at once), smaller batches
  padded with zero rows (not while forward hooks, e.g. a SpikeMonitor, watch the network: they would only see the
  capture).
* a minibatch or a frame stack reaches the static buffers from pinned host memory by a non-blocking copy
  (:class:`PinnedStaging`); nothing in an update waits for the device: the loss stays there.

The same operations in the same order as eager. With --deterministic both paths use the capturable Adam and
deterministic kernels and give identical bits; in the default regime eager keeps the plain Adam, whose float32
rounding differs from the capturable one's by a few units in the last place, and non-deterministic kernels (TF32,
atomics) make eager differ from itself as much (tests/test_speed_paths.py compares both on a GPU). If a capture
fails (a kernel that cannot be captured), the reason is logged and the eager path is used from then on.

Why the next minibatch is not sampled ahead: the minibatch of a step may hold the transition of that step, and the
step before it has to act with the weights of the previous update, so sampling, copying, updating and acting form
one chain; sampling ahead would draw from a memory four steps old and break --resume's bit-exact continuation,
for a saving of one replay sample (about 0.13 ms) per update.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

logger = logging.getLogger("file_logger")
WARMUP_STEPS = 3


class PinnedStaging:
    """Copies a sequence of CPU tensors into fixed device buffers through pinned host buffers without blocking.

    ``slots`` pinned buffer sets are used in turn; one is rewritten only once its previous copy has finished (an
    event), so the host never waits on the copy it has just issued. On the CPU (nothing to pin) it is a plain copy.
    """

    def __init__(self, like: Sequence[torch.Tensor], device: torch.device | str, slots: int = 2):
        self.device = torch.device(device)
        pin = self.device.type == "cuda"
        self.host = [[torch.empty(t.shape, dtype=t.dtype, pin_memory=pin) for t in like] for _ in range(slots)]
        self.copied: list[torch.cuda.Event | None] = [None] * slots
        self.buffers = [torch.empty(t.shape, dtype=t.dtype, device=self.device) for t in like]
        self.slot = 0

    def copy(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The device buffers, holding ``tensors`` once the copies queued on the current stream have run."""
        slot, self.slot = self.slot, (self.slot + 1) % len(self.host)
        if self.copied[slot] is not None:
            self.copied[slot].synchronize()
        for host, tensor, buffer in zip(self.host[slot], tensors, self.buffers):
            host.copy_(tensor)
            buffer.copy_(host, non_blocking=True)
        if self.device.type == "cuda":
            self.copied[slot] = torch.cuda.Event()
            self.copied[slot].record()
        return self.buffers


class CudaGraphs:
    """The graphs of one Agent; :meth:`update` and :meth:`q_values` return None where the eager path must run."""

    def __init__(self, agent):
        self.agent = agent
        self.failed: str | None = None  # why a capture failed: eager from then on
        self.batches = self.update_graph = self.loss_out = self.signature = None
        self.act: dict[int, tuple] = {}  # batch size -> (staging, graph, Q output) of act

    # -- update ------------------------------------------------------------------------------------------------------

    def update(self, batch) -> torch.Tensor | None:
        if self.failed:
            return None
        if self.batches is None:
            self.batches = PinnedStaging(tuple(batch), self.agent.device)
        self.batches.copy(tuple(batch))
        if self.update_graph is None or self.signature != self._signature():
            self._capture(self._capture_update)
            if self.failed:
                return None
        self.update_graph.replay()
        return self.loss_out.clone()

    def _signature(self) -> tuple:
        """What the update graph has baked in besides the weights: the learning rates and Adam's state tensors."""
        optimizer = self.agent.optimizer
        state = optimizer.state.get(optimizer.param_groups[0]["params"][0], {})
        return tuple(group["lr"] for group in optimizer.param_groups), id(state.get("exp_avg")), id(state.get("step"))

    def _capture_update(self) -> None:
        agent, optimizer = self.agent, self.agent.optimizer
        params = [p for group in optimizer.param_groups for p in group["params"]]
        saved = [p.detach().clone() for p in params]
        saved_state = {p: {k: v.clone() for k, v in optimizer.state[p].items() if torch.is_tensor(v)}
                       for p in params if optimizer.state.get(p)}
        try:
            self._warm_up(lambda: self._train_step(agent))
        finally:  # undo the warm-up: the first replay is the first update
            with torch.no_grad():
                for p, value in zip(params, saved):
                    p.copy_(value)
                for p in params:
                    for key, value in optimizer.state.get(p, {}).items():
                        if torch.is_tensor(value) and p in saved_state:
                            value.copy_(saved_state[p][key])
                        elif torch.is_tensor(value):
                            value.zero_()
        optimizer.zero_grad(set_to_none=True)  # the gradients are written (not added) by the captured backward
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss = self._train_step(agent, zero_grad=False)
        self.update_graph, self.loss_out, self.signature = graph, loss.detach(), self._signature()

    def _train_step(self, agent, zero_grad: bool = True) -> torch.Tensor:
        if zero_grad:
            agent.optimizer.zero_grad(set_to_none=True)
        loss = agent.loss(*self.batches.buffers)
        loss.backward()
        agent.optimizer.step()
        return loss

    # -- act ---------------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def q_values(self, frame_stacks: np.ndarray) -> torch.Tensor | None:
        """Q-values of a batch of frame stacks: the graph of the smallest captured batch size (a power of two)
        that holds them, the rows past them filled with zeros (each row is computed on its own)."""
        net = self.agent.net
        if self.failed or any(m._forward_hooks or m._forward_pre_hooks for m in net.modules()):
            return None
        frames = torch.from_numpy(np.ascontiguousarray(frame_stacks))
        n = frames.shape[0]
        size = 1 << (n - 1).bit_length()
        if size != n:
            frames = torch.cat([frames, frames.new_zeros((size - n, *frames.shape[1:]))])
        if size not in self.act:
            staging = PinnedStaging((frames,), self.agent.device)
            staging.copy((frames,))
            self._capture(lambda: self._capture_act(size, staging))
            if self.failed:
                return None
        staging, graph, q_out = self.act[size]
        staging.copy((frames,))
        graph.replay()
        return q_out[:n].cpu()

    def _capture_act(self, size: int, staging: PinnedStaging) -> None:
        def forward() -> torch.Tensor:
            with self.agent.autocast():
                return self.agent.net(staging.buffers[0]).float()

        self._warm_up(forward)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            q = forward()
        self.act[size] = (staging, graph, q)

    # -- capture -----------------------------------------------------------------------------------------------------

    @staticmethod
    def _warm_up(step) -> None:
        """A few calls on a side stream before a capture (the recommended way: lazy initialisation stays out of it)."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                step()
        torch.cuda.current_stream().wait_stream(side)

    def _capture(self, capture) -> None:
        try:
            capture()
        except Exception as error:  # noqa: BLE001 - any failed capture means: run eagerly
            self.failed = f"{type(error).__name__}: {error}"
            logger.warning("--cuda_graphs: capture failed (%s); acting and updating eagerly instead", self.failed)
