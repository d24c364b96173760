"""Converting a trained Dqn into a spiking network and simulating it (PAPER_NOTES §6).

* :mod:`.percentile`: exact streamed percentiles (numpy 'linear' interpolation) for the normalisation;
* :mod:`.normalise`: normalisation data from ANN play and the layer scales lambda_l;
* :mod:`.simulate`: the converted network, its layer-by-layer simulation and a step-by-step reference;
* :mod:`.evaluate`: playing the converted network and summarising scores, agreement and spikes.
"""

from .evaluate import EpisodeStats, evaluate, play_episode, summarise
from .normalise import (
    NormalisationError,
    collect_normalisation_states,
    compute_lambdas,
    epsilon_greedy,
    game_over,
    pre_activations,
)
from .percentile import StreamingPercentile, exact_percentile
from .simulate import LAYER_NAMES, NODE_TYPES, SimulationResult, SpikingNetwork, neuron_step

__all__ = [
    "LAYER_NAMES",
    "NODE_TYPES",
    "EpisodeStats",
    "NormalisationError",
    "SimulationResult",
    "SpikingNetwork",
    "StreamingPercentile",
    "collect_normalisation_states",
    "compute_lambdas",
    "epsilon_greedy",
    "evaluate",
    "exact_percentile",
    "game_over",
    "neuron_step",
    "play_episode",
    "pre_activations",
    "summarise",
]
