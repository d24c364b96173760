"""The run lifecycle around the DQN loop of agent.training: what makes a learning run survivable and watchable.

The loop (:meth:`agent.training.Trainer.learn`) calls its :class:`Run` at named points:

    running()            around the whole loop: at its end status.json says finished (a stop inside an
                         evaluation saves and stops there)
    phase(name), tick()  the progress bars ('refill', 'explore', and 'learn', which counts learning steps only) and
                         progress.json, the small file a watcher such as the sweep reads
    env_stepped(...)     after each training-env step: a finished game's raw score (train/episode_return), the video
    losses, check_q(),   the NaN guard: the losses are summed on the device (one sync per log_freq steps); a
    guard(), diverged()  non-finite loss, Q-value or weight stops the run (exit 3) and keeps the last good state
    log_training(...)    every log_freq steps: learn/loss, train/epsilon, train/steps_per_s
    evaluation_begins/   around an evaluation: its display, its scores (TensorBoard evaluate/*, run.log,
    record_evaluation/   evaluations.csv), and the evaluation env's state at its start, so that a stop inside it
    evaluation_ends      continues from that start
    save()               the full training state, atomically (agent.persistence), and status.json
    stop_if_requested()  SIGINT / SIGTERM (:class:`StopRequest`): save the state and stop (exit 130 / 143)

and :meth:`Run.resume` / :meth:`Run.restore` put a saved state back before the loop starts.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
from dataclasses import asdict

import numpy as np
import torch
from tqdm import tqdm

from environment.state import env_state, restore_env_state
from environment.vector import EvaluationEnvs
from utils.cli import EXIT_SIGINT, EXIT_SIGTERM, Diverged, Stopped, UserError
from utils.runs import ProgressFile, RateMeter, RunFolder, evaluation_row

from .persistence import Progress, load_state, save_state, undo_journal

logger = logging.getLogger("file_logger")


class StopRequest:
    """SIGINT / SIGTERM ask the loop to save and stop at the next safe point; a second Ctrl-C stops at once."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self) -> StopRequest:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: no more saving
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return EXIT_SIGTERM if self.signum == signal.SIGTERM else EXIT_SIGINT


class _Interrupted(Exception):
    """Raised inside an evaluation when a stop was requested."""


class Run:
    """The lifecycle of one learning run (a :class:`agent.training.Trainer`'s): its saved state, stops, the NaN
    guard, and what it shows and writes besides the networks (bars, progress.json, status.json, TensorBoard)."""

    def __init__(self, trainer, stop: StopRequest | None = None):
        self.trainer = trainer
        self.run_dir = trainer.run_dir
        self.folder = RunFolder(self.run_dir)  # its status.json and evaluations.csv
        self.state_dir = os.path.join(self.run_dir, "state")
        self.stop = stop or StopRequest()
        self.losses = LossMeter(trainer.agent.device)
        self.eval_snapshot: dict | None = None  # the evaluation env's state when the pending evaluation began
        self.last_saved: int | None = None  # learning step of the last saved state
        self.refill = False  # resumed without the replay memory: fill it again before learning goes on
        self.meter = RateMeter()
        self.bar = None
        self.phase_name: str | None = None
        self.progress = ProgressFile(self.run_dir)  # progress.json, for a watcher such as the sweep
        self._eval_games = 0

    # -- around the loop --------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def running(self):
        """Around the loop: at its end (the final evaluation done) status.json and progress.json say finished."""
        trainer, p = self.trainer, self.trainer.p
        self.meter.rate(p.timestep)
        evaluations = self.folder.evaluations  # a resumed run: its last evaluation so far
        if evaluations:
            self.progress.last_eval = (int(evaluations[-1]["step"]), float(evaluations[-1]["mean"] or "nan"))
        try:
            yield
        except _Interrupted:
            self.stop_if_requested()
        finally:
            if self.bar is not None:
                self.bar.close()
        self.folder.write_status("finished", timestep=p.timestep, best_score=p.best_score)
        self.progress.update("finished", p.timestep, trainer.config.timestep_num, counts="learn")
        logger.info("Learning is done; best average evaluation score %s", p.best_score)

    def phase(self, name: str) -> None:
        """Enter the loop's phase ``name`` (nothing if it is the current one): 'refill' (random steps into the
        replay memory of a run resumed without it, not counted), 'explore' (the random steps before the
        learning-starts threshold) or 'learn' (its bar counts learning steps only)."""
        if name == self.phase_name:
            return
        if self.bar is not None:
            self.bar.close()
        cfg, p = self.trainer.config, self.trainer.p
        initial = 0
        if name == "refill":
            total = cfg.replay_start_size
            logger.info("The replay memory was not saved: refilling it with %d random steps (not counted)", total)
        elif name == "explore":
            total = cfg.replay_start_size - p.explored
            logger.info("Start exploring for %d steps", total)
        else:
            total, initial = cfg.timestep_num, p.timestep
            if p.timestep == 0 and p.pending_eval is None:
                logger.info("Start learning for %d steps", total)
        self.bar = tqdm(total=total, initial=initial, desc=name, unit="step", dynamic_ncols=True, mininterval=1.0)
        self.phase_name = name

    def tick(self, done: int | None = None) -> None:
        """One step of the current phase taken; ``done``: the phase's steps done (default: the bar's count)."""
        self.bar.update()
        self.progress.update(self.phase_name, self.bar.n if done is None else done, self.bar.total)

    def env_stepped(self, info: dict, log_games: bool, timestep: int) -> None:
        """After a training-env step: the video, and with ``log_games`` a finished game's raw score (all lives)."""
        trainer = self.trainer
        if trainer.video is not None:
            trainer.video.step(trainer.train_env, "game_return" in info, trainer.p.explored + trainer.p.timestep)
        if log_games and "game_return" in info:
            trainer.p.games += 1
            trainer.writer.add_scalar("train/episode_return", info["game_return"], timestep)

    def log_training(self, t: int, epsilon: float) -> None:
        """Every log_freq steps: the mean loss since the last write (one device sync), epsilon and steps/s."""
        self.guard(t, weights=False)
        writer = self.trainer.writer
        mean = self.losses.mean_and_reset()
        if mean is not None:
            writer.add_scalar("learn/loss", mean, t)
        writer.add_scalar("train/epsilon", epsilon, t)
        writer.add_scalar("train/steps_per_s", self.meter.rate(t + 1), t)

    # -- evaluation -------------------------------------------------------------------------------------------------

    def evaluation_begins(self, label: int) -> None:
        """Guard the network, remember where the evaluation env and its generator start, show 'eval'."""
        trainer = self.trainer
        self.guard(label)
        self.eval_snapshot = {"env": env_state(trainer.eval_env),
                              "rng": trainer.agent.rngs["evaluate"].bit_generator.state}
        self.bar.set_description("eval")
        self.progress.update("eval", self.bar.n, trainer.config.timestep_num, counts="learn")
        self._eval_games = 0

    def evaluated_game(self, index: int, result) -> None:
        self._eval_games += 1
        self.bar.set_postfix_str(f"eval game {self._eval_games}/{self.trainer.config.eval_episode_num} score "
                                 f"{result.score:g}")

    def check_stop(self) -> None:
        """Called inside an evaluation between games: a requested stop ends it there."""
        if self.stop.signum is not None:
            raise _Interrupted

    def record_evaluation(self, label: int, results: list) -> float:
        """The evaluation's scores into TensorBoard (evaluate/*), run.log and evaluations.csv; its average score."""
        scores = [r.score for r in results]
        average, std = float(np.mean(scores)), float(np.std(scores))
        max_qs = [r.max_q for r in results if not math.isnan(r.max_q)]
        average_max_q = float(np.mean(max_qs)) if max_qs else math.nan
        truncated = sum(bool(r.truncated) for r in results)  # games cut by max_episode_step, not finished
        for tag, value in (("average_score", average), ("score_std", std), ("average_max_q", average_max_q),
                           ("truncated_games", truncated)):
            self.trainer.writer.add_scalar(f"evaluate/{tag}", value, label)
        logger.info("timestep: %d\taverage_score: %s\tscore_std: %s\taverage_max_q: %s\ttruncated_games: %d", label,
                    average, std, average_max_q, truncated)
        self.folder.write_evaluation(evaluation_row(label, scores, average_max_q, truncated))
        return average

    def evaluation_ends(self, label: int, average: float) -> None:
        self.eval_snapshot = None
        self.bar.set_description("learn")
        self.bar.set_postfix_str(f"last eval {average:g}")
        self.progress.last_eval = (label, average)
        self.progress.update("learn", self.bar.n, self.trainer.config.timestep_num)

    # -- the NaN guard ------------------------------------------------------------------------------------------------

    def check_q(self, q: torch.Tensor | None, t: int) -> None:
        """Stop (exit 3) if the Q-values the agent acted on are not finite."""
        if q is not None and not bool(torch.isfinite(q).all()):
            self.guard(t, weights=False)  # a non-finite loss before it is the cause to report
            self.diverged(f"the network's Q-values became non-finite (NaN or infinity) at learning step {t}")

    def guard(self, step: int, weights: bool = True) -> None:
        """Stop (exit 3) if a loss so far or, with ``weights``, a weight is NaN or infinite."""
        bad = self.losses.first_nonfinite()
        if bad is not None:
            self.diverged(f"the loss became non-finite (NaN or infinity) at learning step {bad}")
        if weights and not self.trainer.agent.weights_are_finite():
            self.diverged(f"the network's weights became non-finite (NaN or infinity) by learning step {step}")

    def diverged(self, what: str) -> None:
        self.folder.write_status("diverged", timestep=self.trainer.p.timestep, last_saved=self.last_saved)
        logger.error("%s; the run is stopped", what)
        kept = (f"the last good state (learning step {self.last_saved}) is kept: continue it with a lower learning "
                f"rate, e.g.  python run.py --resume {self.run_dir} --learning_rate "
                f"{self.trainer.config.learning_rate / 2:g}"
                if self.last_saved is not None else "no training state was saved before it")
        raise Diverged(f"{what}; the run is stopped and {kept}")

    # -- saving, stopping, resuming -----------------------------------------------------------------------------------

    def purge_step(self) -> int:
        """The first TensorBoard step this (resumed) run writes again: later events of the run that was cut off
        are discarded by TensorBoard's readers (SummaryWriter's purge_step), so no point appears twice."""
        p = self.trainer.p
        return p.timestep + (1 if p.pending_eval is not None else 0)

    def state(self) -> dict:
        """Everything needed to continue this run exactly (see agent.training's module docstring)."""
        trainer = self.trainer
        agent = trainer.agent
        eval_env = self.eval_snapshot["env"] if self.eval_snapshot else env_state(trainer.eval_env)
        eval_rng = self.eval_snapshot["rng"] if self.eval_snapshot else agent.rngs["evaluate"].bit_generator.state
        return {
            "format": 1,
            "progress": asdict(trainer.p),
            "config": trainer.config.to_dict(),
            "net": agent.net.state_dict(),
            "target_net": agent.target_net.state_dict(),
            "optimizer": agent.optimizer.state_dict(),
            "rngs": {"explore": agent.rngs["explore"].bit_generator.state, "evaluate": eval_rng,
                     "torch": torch.get_rng_state()},
            "train_env": env_state(trainer.train_env),
            "eval_env": eval_env,
            "obs": None if trainer.obs is None else torch.from_numpy(trainer.obs.copy()),
            "losses": self.losses.state(),
            "replay": trainer.replay.state_dict() if trainer.config.save_replay else None,
        }

    def save(self) -> None:
        """Write the full training state (atomically; the previous one stays until this one is complete)."""
        trainer, p = self.trainer, self.trainer.p
        self.guard(p.timestep)  # a diverged network never replaces the last good state
        trainer.writer.flush()  # TensorBoard events up to this step are on disk before the state that follows them
        save_state(self.state_dir, self.state(), trainer.replay if trainer.config.save_replay else None,
                   timestep=p.timestep, explored=p.explored, pending_eval=p.pending_eval, finished=p.finished)
        self.last_saved = p.timestep
        self.folder.write_status("running", timestep=p.timestep, explored=p.explored, best_score=p.best_score)

    def restore(self, state: dict, replay_kept: bool) -> None:
        """Load a state from :meth:`state`; ``replay_kept``: the replay memory's frames are as they were saved."""
        trainer, agent, cfg = self.trainer, self.trainer.agent, self.trainer.config
        p = trainer.p = Progress(**state["progress"])
        agent.net.load_state_dict(state["net"])
        agent.target_net.load_state_dict(state["target_net"])
        agent.optimizer.load_state_dict(state["optimizer"])
        agent.rngs["explore"].bit_generator.state = state["rngs"]["explore"]
        agent.rngs["evaluate"].bit_generator.state = state["rngs"]["evaluate"]
        torch.set_rng_state(state["rngs"]["torch"])
        restore_env_state(trainer.train_env, state["train_env"])
        if not isinstance(trainer.eval_env, EvaluationEnvs):  # its games start from their own seeds: nothing to restore
            restore_env_state(trainer.eval_env, state["eval_env"])
        trainer.obs = None if state["obs"] is None else state["obs"].numpy().copy()
        self.losses.load(state["losses"])
        if replay_kept:
            trainer.replay.load_state_dict(state["replay"])
        else:  # the replay memory was not kept: refill it before learning goes on (not bit-exact)
            self.refill = p.timestep < cfg.timestep_num or p.pending_eval is not None or trainer.final_step_due()
        if cfg.timestep_num < p.timestep:
            raise UserError(f"--timestep_num {cfg.timestep_num} is below the {p.timestep} learning "
                            "steps this run has already done")
        if p.finished and cfg.timestep_num > p.timestep:
            p.finished = False  # a larger budget: train on, and evaluate the new final network
            if p.final_step:  # step timestep_num was taken for the final evaluation: go on after it
                p.timestep, p.final_step = p.timestep + 1, False
        self.last_saved = p.timestep

    def resume(self, loaded: tuple[dict, dict] | None | bool = True) -> dict | None:
        """Continue from the run folder's saved state (its manifest; or ``loaded``, the (state, manifest) already
        read and checked), None if no state was saved yet. With the replay memory kept, the frames overwritten since
        that state are put back from the undo journal first."""
        replay = self.trainer.replay
        state_dir = self.state_dir
        loaded = load_state(state_dir) if loaded is True else loaded
        if loaded is None:
            return None
        state, manifest = loaded
        replay_kept = bool(manifest["replay"] and self.trainer.config.save_replay and not replay.frames_file_created)
        if replay_kept:
            journal = undo_journal(state_dir, manifest["sequence"])
            if os.path.exists(journal):
                restored = replay.undo(journal)
                logger.info("replay memory: %d frames overwritten after the saved state were put back", restored)
            replay.start_journal(journal)
        elif manifest["replay"]:
            logger.info("the replay memory's frames file is missing or damaged: the memory is refilled")
        self.restore(state, replay_kept)
        manifest["replay"] = replay_kept
        return manifest

    def stop_if_requested(self) -> None:
        """After a SIGINT / SIGTERM: save the state and stop (exit 130 / 143)."""
        if self.stop.signum is None:
            return
        p = self.trainer.p
        self.save()
        name = signal.Signals(self.stop.signum).name
        self.folder.write_status("stopped", timestep=p.timestep, explored=p.explored, signal=name)
        self.progress.update("stopped", p.timestep, self.trainer.config.timestep_num, counts="learn")
        logger.info("Stopped by %s at learning step %d; state saved", name, p.timestep)
        raise Stopped(f"stopped by {name} at learning step {p.timestep} (exploration step {p.explored}); "
                      f"the training state is saved: continue with  python run.py --resume {self.run_dir}",
                      self.stop.exit_status)


class LossMeter:
    """Sums the losses on the device (no sync per update) and remembers the first update with a non-finite loss."""

    def __init__(self, device: torch.device):
        self.device = device
        self.sum = torch.zeros((), dtype=torch.float64, device=device)
        self.count = 0
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)

    def add(self, loss: torch.Tensor, step: int) -> None:
        self.sum += loss
        self.count += 1
        self.first_bad.masked_fill_((self.first_bad < 0) & ~torch.isfinite(loss), step)

    def first_nonfinite(self) -> int | None:
        bad = int(self.first_bad)
        return bad if bad >= 0 else None

    def mean_and_reset(self) -> float | None:
        mean = float(self.sum) / self.count if self.count else None
        self.sum.zero_()
        self.count = 0
        return mean

    def state(self) -> dict:
        return {"sum": self.sum.cpu(), "count": self.count, "first_bad": self.first_bad.cpu()}

    def load(self, state: dict) -> None:
        self.sum = state["sum"].to(self.device)
        self.count = int(state["count"])
        self.first_bad = state["first_bad"].to(self.device)
