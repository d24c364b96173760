"""The names and shapes of the paper's networks, in one place: the four models and the Nature-DQN layers they
share (docs/METHOD.md). Torch is imported only to build the layers, so the plots and the sweep read the names
cheaply::

    conv1 Conv(4->32, k8, s4) -> conv2 Conv(32->64, k4, s2) -> conv3 Conv(64->64, k3, s1)
    -> flatten (3136) -> fc1 Linear(3136->512) -> fc2 Linear(512->n_actions)
"""

from __future__ import annotations

#: run.py's --model choices; a checkpoint's ``model_id`` is the index in this tuple.
MODELS = ("Dqn", "Dsqn", "DsqnSpike", "DsqnIF")
#: The five weight layers, in the order the input flows through them.
LAYER_NAMES = ("conv1", "conv2", "conv3", "fc1", "fc2")
OUTPUT_LAYER = LAYER_NAMES[-1]  # one unit per action: the Q-values (or the output spikes)
FRAME_SIZE = 84  # the preprocessed frames are FRAME_SIZE x FRAME_SIZE
#: (name, output channels, kernel size, stride) of the three convolutions.
CONVOLUTIONS = (("conv1", 32, 8, 4), ("conv2", 64, 4, 2), ("conv3", 64, 3, 1))
CONV_OUTPUT_SIZE = 64 * 7 * 7  # 3136 features after conv3 on an 84x84 input
HIDDEN_SIZE = 512  # fc1's neurons


def frame_stack_shape(history_len: int) -> tuple[int, int, int]:
    """One input of the networks (no batch dimension): ``history_len`` stacked FRAME_SIZE x FRAME_SIZE frames."""
    return (history_len, FRAME_SIZE, FRAME_SIZE)


def nature_dqn_layers(n_actions: int, history_len: int = 4, **factory) -> dict:
    """conv1 ... fc2 of the Nature DQN as torch modules, made in that order (``factory``: e.g. ``device="meta"``)."""
    from torch import nn

    layers, channels = {}, history_len
    for name, out_channels, kernel, stride in CONVOLUTIONS:
        layers[name] = nn.Conv2d(channels, out_channels, kernel_size=kernel, stride=stride, **factory)
        channels = out_channels
    layers["fc1"] = nn.Linear(CONV_OUTPUT_SIZE, HIDDEN_SIZE, **factory)
    layers["fc2"] = nn.Linear(HIDDEN_SIZE, n_actions, **factory)
    return layers


class NatureDqnLayers:
    """The weight layers of a network that holds them as attributes named :data:`LAYER_NAMES` (a mixin of the
    Q-network and the converted spiking network)."""

    @property
    def weight_layers(self) -> list:
        """conv1 ... fc2, in the order the input flows through them."""
        return [getattr(self, name) for name in LAYER_NAMES]

    @property
    def named_weight_layers(self) -> dict:
        """conv1 ... fc2 by name, in the order the input flows through them."""
        return {name: getattr(self, name) for name in LAYER_NAMES}

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One input (no batch dimension): the frame stack conv1 reads."""
        return frame_stack_shape(self.weight_layers[0].in_channels)


def nature_dqn_layer_macs(n_actions: int, history_len: int = 4) -> dict[str, int]:
    """Per layer MACs of the Nature DQN, from the architecture alone (no weights are allocated)."""
    from utils.energy import network_macs

    return network_macs(nature_dqn_layers(n_actions, history_len, device="meta"), frame_stack_shape(history_len))
