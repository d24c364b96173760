"""Converting a trained Dqn into a spiking network and simulating it.

* :mod:`.percentile`: exact streamed percentiles (numpy 'linear' interpolation) for the normalisation;
* :mod:`.games`: full games on the episodic-life env (FIRE pressed by the env after a lost life);
* :mod:`.normalise`: normalisation data from ANN play and the layer scales lambda_l;
* :mod:`.simulate`: the converted network, its layer-by-layer simulation and a step-by-step reference;
* :mod:`.agreement`: how often the SNN's greedy action is the ANN's, against T, for both schedules;
* :mod:`.evaluate`: playing the converted network and summarising scores, agreement and spikes.
"""

from .agreement import greedy_agreement
from .evaluate import FIRING_RATE_SPANS, EpisodeStats, evaluate, play_episode, summarise
from .games import GameStep, GameStepResult, game_over, game_score, make_game_env, step_game
from .normalise import (
    KEEP_RULES,
    MAX_LIVES,
    NormalisationError,
    NormalisationGame,
    collect_normalisation_states,
    compute_lambdas,
    epsilon_greedy,
    pre_activations,
)
from .percentile import StreamingPercentile, exact_percentile
from .simulate import LAYER_NAMES, NODE_TYPES, SCHEDULES, SimulationResult, SpikingNetwork, neuron_step

__all__ = [
    "FIRING_RATE_SPANS",
    "KEEP_RULES",
    "LAYER_NAMES",
    "MAX_LIVES",
    "NODE_TYPES",
    "SCHEDULES",
    "EpisodeStats",
    "GameStep",
    "GameStepResult",
    "NormalisationError",
    "NormalisationGame",
    "SimulationResult",
    "SpikingNetwork",
    "StreamingPercentile",
    "collect_normalisation_states",
    "compute_lambdas",
    "epsilon_greedy",
    "evaluate",
    "exact_percentile",
    "game_over",
    "game_score",
    "greedy_agreement",
    "make_game_env",
    "neuron_step",
    "play_episode",
    "pre_activations",
    "step_game",
    "summarise",
]
