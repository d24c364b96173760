"""Experiment tracking of a learning run (run.py --method learn), as CleanRL users expect it:

* the full configuration in TensorBoard, as text ("hyperparameters": one table row per option) and in the
  HPARAMS tab (the options as hyperparameters of the run, with the evaluation scores as its metrics);
* ``--track``: the run on Weights & Biases (package ``wandb``, the ``track`` extra): its configuration, every
  TensorBoard scalar (wandb's ``sync_tensorboard``) and the training videos; a resumed run continues the same W&B
  run (its id is kept in the run folder's ``wandb-run-id``). ``WANDB_MODE=offline`` writes it under the run
  folder's ``wandb/`` without a network, for a later ``wandb sync``;
* ``--capture_video``: every ``--video_freq``-th game of the training env (game 0 first; exploration games count)
  as an mp4 in the run folder's ``videos/train/``, the emulator screen after each agent step (15 frames per second
  of game time at 4 frames per step), written while the game is played.
"""

from __future__ import annotations

import importlib.util
import math
import os
import uuid

from utils.cli import UserError

VIDEO_FPS = 15  # one frame per agent step of 4 emulator frames at 60 Hz
WANDB_ID_FILE = "wandb-run-id"
METRICS = ("evaluate/average_score", "evaluate/max_average_score")


def check(config) -> None:
    """Refuse, before anything is written, an option whose package is missing (one line naming the extra)."""
    if config.track and importlib.util.find_spec("wandb") is None:
        raise UserError("--track needs wandb: pip install -e \".[track]\"")
    if config.capture_video and importlib.util.find_spec("moviepy") is None:
        raise UserError("--capture_video needs moviepy: pip install -e \".[video]\"")


def hyperparameters(config) -> dict:
    """The configuration as TensorBoard hyperparameters: numbers, booleans and strings (anything else as text)."""
    return {name: value if isinstance(value, (bool, int, float, str)) else str(value)
            for name, value in config.to_dict().items()}


def log_config(writer, config) -> None:
    """The full configuration into a SummaryWriter's run: a text table and the HPARAMS tab."""
    from torch.utils.tensorboard.summary import hparams

    values = hyperparameters(config)
    table = "|option|value|\n|-|-|\n" + "\n".join(f"|{name}|{value}|" for name, value in sorted(values.items()))
    writer.add_text("hyperparameters", table, 0)
    for summary in hparams(values, dict.fromkeys(METRICS, math.nan)):  # experiment, session start, session end
        writer.file_writer.add_summary(summary)
    writer.flush()


class Tracking:
    """What --track and --capture_video add to a learning run. Make it before the run's SummaryWriter (wandb
    mirrors the TensorBoard scalars written after its init), :meth:`attach` it to the Trainer once the writer
    exists, and :meth:`close` it at the end."""

    def __init__(self, config, run_dir: str, fresh: bool):
        self.config, self.run_dir, self.fresh = config, run_dir, fresh
        self.wandb = self.run = self.video = None
        if config.track:
            import wandb

            id_file = os.path.join(run_dir, WANDB_ID_FILE)
            if os.path.isfile(id_file):
                with open(id_file) as file:
                    run_id = file.read().strip()
            else:
                run_id = uuid.uuid4().hex[:12]
                with open(id_file, "w") as file:
                    file.write(run_id + "\n")
            self.wandb = wandb
            self.run = wandb.init(project=config.wandb_project, entity=config.wandb_entity,
                                  name=os.path.basename(run_dir), id=run_id, resume="allow", dir=run_dir,
                                  config=config.to_dict(), sync_tensorboard=True)

    def attach(self, trainer) -> None:
        if self.fresh:
            log_config(trainer.writer, self.config)
        if self.config.capture_video:
            self.video = TrainingVideo(os.path.join(self.run_dir, "videos", "train"), self.config.video_freq,
                                       self.config.env_id, start_now=self.fresh, on_saved=self._saved)
            trainer.video = self.video

    def _saved(self, path: str, game: int) -> None:
        if self.run is not None:
            self.run.log({"videos/train": self.wandb.Video(path, format="mp4", caption=os.path.basename(path))})

    def close(self) -> None:
        if self.video is not None:
            self.video.close()
        if self.run is not None:
            self.run.finish()


def atari_screen(env):
    """The RGB screen of the ALE emulator inside a wrapped env."""
    while not hasattr(env, "ale"):
        env = env.env
    return env.ale.getScreenRGB()


class TrainingVideo:
    """Records every ``every``-th game of the training env (``step`` is called after each of its steps)."""

    def __init__(self, folder: str, every: int, name: str, start_now: bool = True, on_saved=None):
        self.folder, self.every, self.name, self.on_saved = folder, every, name, on_saved
        self.games = 0  # games that began since recording was set up
        self.at_game_start = start_now  # a resumed run is mid-game: it starts with the next game
        self.writer = self.path = None

    def step(self, env, game_over: bool, step: int) -> None:
        if self.at_game_start:
            self.at_game_start = False
            if self.games % self.every == 0:
                self._open(atari_screen(env).shape, step)
        if self.writer is not None:
            self.writer.write_frame(atari_screen(env))
        if game_over:
            self._close_game()
            self.games += 1
            self.at_game_start = True

    def _open(self, shape, step: int) -> None:
        from moviepy.video.io.ffmpeg_writer import FFMPEG_VideoWriter

        os.makedirs(self.folder, exist_ok=True)
        self.path = os.path.join(self.folder, f"{self.name}-step{step}.mp4")
        self.writer = FFMPEG_VideoWriter(self.path, (shape[1], shape[0]), VIDEO_FPS, codec="libx264",
                                         pixel_format="yuv420p", logfile=None)

    def _close_game(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            if self.on_saved is not None:
                self.on_saved(self.path, self.games)

    def close(self) -> None:
        """At the end of the run: the game being recorded is written as far as it went."""
        self._close_game()
