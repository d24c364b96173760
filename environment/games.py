"""The paper's 17 Atari games (ALE env ids), without importing the emulator."""

from __future__ import annotations

GAMES = (
    "AtlantisNoFrameskip-v4",
    "BeamRiderNoFrameskip-v4",
    "BoxingNoFrameskip-v4",
    "BreakoutNoFrameskip-v4",
    "CrazyClimberNoFrameskip-v4",
    "GopherNoFrameskip-v4",
    "JamesbondNoFrameskip-v4",
    "KangarooNoFrameskip-v4",
    "KrullNoFrameskip-v4",
    "NameThisGameNoFrameskip-v4",
    "PongNoFrameskip-v4",
    "RoadRunnerNoFrameskip-v4",
    "SpaceInvadersNoFrameskip-v4",
    "StarGunnerNoFrameskip-v4",
    "TennisNoFrameskip-v4",
    "TutankhamNoFrameskip-v4",
    "VideoPinballNoFrameskip-v4",
)
SUFFIX = "NoFrameskip-v4"
#: The games' short names (Breakout), as the plots and the sweep name them.
SHORT_NAMES = tuple(game.removesuffix(SUFFIX) for game in GAMES)
