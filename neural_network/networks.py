"""The four Q-networks of the paper, made by one builder.

All four share the Nature-DQN layer shapes (input 4x84x84, :mod:`neural_network.architecture`) and differ only
in the activation after each layer and in how the output is decoded:

========== ============ ============================================================
model      neuron       output
========== ============ ============================================================
Dqn        ReLU         fc2(.)  (no activation)
Dsqn       LIF          fc2(firing rate of fc1's neurons over T steps)
DsqnSpike  LIF          firing rate of LIF neurons after fc2 (values k/T in [0, 1])
DsqnIF     IF           fc2(firing rate of fc1's neurons over T steps)
========== ============ ============================================================

In the spiking models conv1 is applied once to the analog frame stack and its output is the constant input
current of the first neuron layer at every one of the T steps (direct encoding). The later layers run in
SpikingJelly's multi-step mode on tensors of shape [T, N, ...]. Every forward pass starts from reset
membranes, so no state carries over between calls.

Inputs are raw pixel values (uint8 or float in 0..255); the network divides by 255.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from spikingjelly.activation_based import functional, neuron, surrogate
from torch import nn

# CONV_OUTPUT_SIZE and MODELS are re-exported
from .architecture import CONV_OUTPUT_SIZE, LAYER_NAMES, MODELS, NatureDqnLayers, nature_dqn_layers  # noqa: F401

SURROGATES = ("ATan", "Sigmoid")


@dataclass(frozen=True)
class ModelKind:
    """What distinguishes one model from another: its neuron and how its output is read."""

    neuron: str  # "relu", "lif" or "if"
    spiking_output: bool  # True: Q is the firing rate of an output neuron layer


MODEL_KINDS = {
    "Dqn": ModelKind(neuron="relu", spiking_output=False),
    "Dsqn": ModelKind(neuron="lif", spiking_output=False),
    "DsqnSpike": ModelKind(neuron="lif", spiking_output=True),
    "DsqnIF": ModelKind(neuron="if", spiking_output=False),
}


def is_spiking(model: str) -> bool:
    return MODEL_KINDS[model].neuron != "relu"


class QNetwork(NatureDqnLayers, nn.Module):
    """One network class for all four models; build it with :func:`build_network`.

    The state dict holds the five weight layers plus two integer buffers, ``model_id`` (the index of the model
    in :data:`MODELS`) and ``time_steps`` (T, 0 for Dqn), so a checkpoint says what it is.
    """

    def __init__(
        self,
        model: str,
        n_actions: int,
        *,
        history_len: int,
        T: int,
        tau: float,
        v_threshold: float,
        v_reset: float | None,
        surrogate_func: str,
        alpha: float,
    ):
        super().__init__()
        if model not in MODEL_KINDS:
            raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
        self.model = model
        self.kind = MODEL_KINDS[model]
        self.n_actions = n_actions
        self.T = T if self.spiking else 0

        for name, layer in nature_dqn_layers(n_actions, history_len).items():
            setattr(self, name, layer)
        self.register_buffer("model_id", torch.tensor(MODELS.index(model)))
        self.register_buffer("time_steps", torch.tensor(self.T))

        n_activations = 5 if self.kind.spiking_output else 4
        self.activations = nn.ModuleList(
            self._make_activation(tau, v_threshold, v_reset, surrogate_func, alpha) for _ in range(n_activations)
        )

    # -- construction ---------------------------------------------------------------------------------------------

    def _make_activation(self, tau, v_threshold, v_reset, surrogate_func, alpha) -> nn.Module:
        if self.kind.neuron == "relu":
            return nn.ReLU()
        if surrogate_func not in SURROGATES:
            raise ValueError(f"unknown surrogate function {surrogate_func!r}; choose one of {', '.join(SURROGATES)}")
        common = dict(
            v_threshold=v_threshold,
            v_reset=v_reset,
            surrogate_function=getattr(surrogate, surrogate_func)(alpha=alpha),
            detach_reset=False,
            step_mode="m",
        )
        if self.kind.neuron == "lif":
            return neuron.LIFNode(tau=float(tau), decay_input=True, **common)
        return neuron.IFNode(**common)

    @property
    def spiking(self) -> bool:
        return self.kind.neuron != "relu"

    @property
    def spiking_layer_names(self) -> list[str]:
        """Names of the neuron layers, named after the weight layer that feeds them (empty for Dqn)."""
        if not self.spiking:
            return []
        return list(LAYER_NAMES[: len(self.activations)])

    def neuron_layers(self) -> dict[str, nn.Module]:
        """The spiking neuron modules by layer name (what :class:`neural_network.SpikeMonitor` watches)."""
        return dict(zip(self.spiking_layer_names, self.activations)) if self.spiking else {}

    # -- forward --------------------------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0
        if not self.spiking:
            return self._forward_ann(x)
        functional.reset_net(self)
        return self._forward_snn(x)

    def _forward_ann(self, x: torch.Tensor) -> torch.Tensor:
        relu1, relu2, relu3, relu4 = self.activations
        x = relu1(self.conv1(x))
        x = relu2(self.conv2(x))
        x = relu3(self.conv3(x))
        x = relu4(self.fc1(x.flatten(1)))
        return self.fc2(x)

    def _forward_snn(self, x: torch.Tensor) -> torch.Tensor:
        T, n = self.T, x.shape[0]
        current = self.conv1(x)  # analog input, computed once
        neurons = self.activations
        s = neurons[0](current.unsqueeze(0).expand(T, *current.shape))
        s = neurons[1](self._per_step(self.conv2, s))
        s = neurons[2](self._per_step(self.conv3, s))
        s = neurons[3](self._per_step(self.fc1, s.reshape(T, n, -1)))
        if self.kind.spiking_output:
            return neurons[4](self._per_step(self.fc2, s)).mean(0)
        return self.fc2(s.mean(0))

    @staticmethod
    def _per_step(layer: nn.Module, seq: torch.Tensor) -> torch.Tensor:
        """Apply a stateless layer to every time step of a [T, N, ...] sequence at once."""
        out = layer(seq.flatten(0, 1))
        return out.reshape(seq.shape[0], seq.shape[1], *out.shape[1:])


def compile_network(net: QNetwork, device: torch.device | str) -> QNetwork:
    """Compile ``net``'s forward pass in place with torch.compile (its state dict keeps its plain keys).

    On CUDA the "reduce-overhead" mode also captures CUDA graphs. The first call of each input shape (batch 1
    for acting, the minibatch for updates) pays the compile time; see the README's Performance section for
    when that is paid back.

    Only the body (``_forward_ann`` / ``_forward_snn``) is compiled: the reset of the neurons before it
    (SpikingJelly's ``functional.reset_net``) stays eager, because it records every network it resets in a
    module-level cache whose size Dynamo would guard on, so that each spiking network reset for the first time
    anywhere in the process (a target network, an evaluation copy) would recompile the forward, and past
    Dynamo's recompile limit it would silently run eager.
    """
    mode = "reduce-overhead" if torch.device(device).type == "cuda" else None
    name = "_forward_snn" if net.spiking else "_forward_ann"
    setattr(net, name, torch.compile(getattr(net, name), mode=mode, dynamic=False))
    return net


def build_network(model: str, n_actions: int, **hyperparameters) -> QNetwork:
    """Build one of :data:`MODELS`. ``hyperparameters``, all required (their defaults are run.py's options,
    ``agent.config.Config.network_kwargs()``): history_len, T, tau, v_threshold, v_reset (None or -1 for soft reset),
    surrogate_func ("ATan" or "Sigmoid") and alpha; Dqn ignores the spiking ones."""
    if hyperparameters.get("v_reset") == -1:
        hyperparameters["v_reset"] = None
    return QNetwork(model, n_actions, **hyperparameters)
