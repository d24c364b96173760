"""The DQN training loop, read top to bottom in :meth:`Trainer.learn`, and everything that makes it survivable.

    explore   replay_start_size random steps fill the replay memory (not counted as learning steps)
    learn     for timestep t = 0 .. timestep_num - 1:
                  act epsilon-greedily (epsilon falls linearly over final_epsilon_frame steps), store the transition
                  every update_freq steps:          one update on a minibatch (agent.Agent.update)
                  every target_net_update_freq:     copy the online network to the target network
                  every eval_freq steps (0 too):    evaluate (eval_episode_num full games), save best.pkl if the
                                                    average score >= the best so far
                  every checkpoint_freq steps:      save the full training state
    end       the final evaluation (label timestep_num), then save the final state. --final_eval one_more_step (the
              default, the original's schedule): the loop runs on into step timestep_num (act, store and, on their
              schedule, update and copy the target) and evaluates after it, as at any step that is a multiple of
              eval_freq, unless step timestep_num - 1 ended an episode (the original's episode loop then stopped
              before step timestep_num; no final evaluation). --final_eval at_budget: evaluate the network after
              exactly timestep_num steps, always.

A life loss and a time-limit truncation end a transition (done = True) while the game goes on after a life loss
(the training env's EpisodicLife). The full state (weights, optimizer, counters, every random generator, both
envs with their emulator state, with --save_replay the replay memory) is saved atomically (agent.persistence);
``--resume`` restores it and continues exactly where it was. SIGINT / SIGTERM save the state and stop (exit
130 / 143); a non-finite loss or Q-value stops the run (exit 3) keeping the last good state.
"""

from __future__ import annotations

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
from neural_network import save_checkpoint
from utils.cli import EXIT_SIGINT, EXIT_SIGTERM, Diverged, Stopped, UserError
from utils.runs import ProgressFile, RateMeter, evaluation_row, read_evaluations, write_evaluation, write_status

from .config import Config, epsilon_at
from .evaluation import NonFiniteQ, evaluate
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


class Trainer:
    """A learning run: the agent (online and target networks, optimizer), both envs, the replay memory, the
    counters, and where it writes (run folder, TensorBoard writer, text log)."""

    def __init__(self, config: Config, agent, train_env, eval_env, replay, run_dir: str, writer,
                 stop: StopRequest | None = None):
        self.config, self.agent, self.replay = config, agent, replay
        self.train_env, self.eval_env = train_env, eval_env
        self.run_dir, self.writer = run_dir, writer
        self.stop = stop or StopRequest()
        self.p = Progress()
        self.obs: np.ndarray | None = None  # the frame stack the agent acts on next; None: reset the env first
        self.losses = _LossMeter(agent.device)
        self.eval_snapshot: dict | None = None  # the evaluation env's state when the pending evaluation began
        self.last_saved: int | None = None  # learning step of the last saved state
        self.refill = False  # resumed without the replay memory: fill it again before learning goes on
        self.meter = RateMeter()
        self.bar = None
        self.progress = ProgressFile(run_dir)  # progress.json, for a watcher such as the sweep
        self.video = None  # --capture_video: a utils.tracking.TrainingVideo, told of every training env step

    # -- the loop ---------------------------------------------------------------------------------------------------

    def learn(self) -> float:
        """Run (or continue) the whole budget; returns the best evaluation average score."""
        cfg, p = self.config, self.p
        self.meter.rate(p.timestep)
        evaluations = read_evaluations(self.run_dir)  # a resumed run: its last evaluation so far
        if evaluations:
            self.progress.last_eval = (int(evaluations[-1]["step"]), float(evaluations[-1]["mean"] or "nan"))
        try:
            if self.refill:
                logger.info("The replay memory was not saved: refilling it with %d random steps (not counted)",
                            cfg.replay_start_size)
                self.explore(cfg.replay_start_size, counted=False)
                p.explored, self.obs = cfg.replay_start_size, None
            if p.explored < cfg.replay_start_size:
                logger.info("Start exploring for %d steps", cfg.replay_start_size - p.explored)
                self.explore(cfg.replay_start_size - p.explored, counted=True)
                self.obs = None  # learning starts from a reset
            if p.timestep == 0 and p.pending_eval is None:
                logger.info("Start learning for %d steps", cfg.timestep_num)
            # the bar counts learning steps only (the exploration phase has a bar of its own)
            self.bar = tqdm(total=cfg.timestep_num, initial=p.timestep, desc="learn", unit="step", dynamic_ncols=True,
                            mininterval=1.0)
            while p.timestep < cfg.timestep_num:
                t = p.timestep
                if p.pending_eval is None:  # (a resumed run may continue with the evaluation of step t)
                    self.train_step(t)
                    if t % cfg.eval_freq == 0:
                        p.pending_eval = t
                if p.pending_eval is not None:
                    self.evaluate(p.pending_eval)
                p.timestep = t + 1
                if t % cfg.checkpoint_every == 0:
                    self.save()
                self.stop_if_requested()
            if not p.finished:
                self.final_evaluation()
        except _Interrupted:
            self.stop_if_requested()
        finally:
            if self.bar is not None:
                self.bar.close()
        write_status(self.run_dir, "finished", timestep=p.timestep, best_score=p.best_score)
        self.progress.update("finished", p.timestep, cfg.timestep_num, counts="learn")
        logger.info("Learning is done; best average evaluation score %s", p.best_score)
        return p.best_score

    def final_evaluation(self) -> None:
        """The evaluation labelled timestep_num, once, on the --final_eval schedule (see the module docstring)."""
        cfg, p = self.config, self.p
        if p.pending_eval is None:  # (a resumed run may continue with the final evaluation itself)
            if cfg.final_eval == "one_more_step" and p.last_done:
                logger.info("No final evaluation: learning step %d ended an episode, so the original's loop stopped "
                            "there (--final_eval at_budget evaluates at timestep_num always)", cfg.timestep_num - 1)
            else:
                if cfg.final_eval == "one_more_step" and not p.final_step:
                    self.train_step(cfg.timestep_num)
                    p.final_step = True
                p.pending_eval = cfg.timestep_num
        if p.pending_eval is not None:
            self.evaluate(p.pending_eval)
        p.finished = True
        self.save()

    def final_step_due(self) -> bool:
        """Step timestep_num is still to be taken before the final evaluation (--final_eval one_more_step)."""
        p = self.p
        return (self.config.final_eval == "one_more_step" and not p.finished and p.pending_eval is None
                and not p.final_step and not p.last_done)

    def explore(self, steps: int, counted: bool) -> None:
        """``steps`` random actions into the replay memory: the exploration phase (``counted``), or a refill."""
        bar = tqdm(total=steps, desc="explore" if counted else "refill", unit="step", dynamic_ncols=True,
                   mininterval=1.0)
        try:
            for _ in range(steps):
                self.env_step(int(self.agent.rngs["explore"].integers(self.agent.n_actions)), log_games=False)
                if counted:
                    self.p.explored += 1
                bar.update()
                self.progress.update("explore" if counted else "refill", bar.n, steps)
                self.stop_if_requested()
        finally:
            bar.close()

    def train_step(self, t: int) -> None:
        """Act, store, and on their schedule update the online network and copy it to the target network."""
        cfg, agent = self.config, self.agent
        epsilon = epsilon_at(t, cfg.init_epsilon, cfg.final_epsilon, cfg.final_epsilon_frame)
        action, q = agent.act(self.current_obs(), epsilon, agent.rngs["explore"])
        if q is not None and not bool(torch.isfinite(q).all()):
            self.guard(t, weights=False)  # a non-finite loss before it is the cause to report
            self.diverged(f"the network's Q-values became non-finite (NaN or infinity) at learning step {t}")
        self.env_step(action, log_games=True, timestep=t)
        self.p.last_done = self.obs is None
        if t % cfg.update_freq == 0:
            self.losses.add(agent.update(self.replay.sample(cfg.minibatch_size)), t)
        if t % cfg.target_net_update_freq == 0:
            agent.sync_target()
        if (t + 1) % cfg.log_freq == 0:
            self.log_training(t, epsilon)
        if t < cfg.timestep_num:  # the bar counts the budget; the final evaluation's extra step is not in it
            self.bar.update()
            self.progress.update("learn", t + 1, cfg.timestep_num)

    def current_obs(self) -> np.ndarray:
        if self.obs is None:
            self.obs, _ = self.train_env.reset()
        return self.obs

    def env_step(self, action: int, log_games: bool, timestep: int = 0) -> None:
        obs = self.current_obs()
        next_obs, reward, terminated, truncated, info = self.train_env.step(action)
        done = terminated or truncated
        self.replay.append(obs, action, reward, done, next_obs)
        self.obs = None if done else next_obs
        if self.video is not None:
            self.video.step(self.train_env, "game_return" in info, self.p.explored + self.p.timestep)
        if log_games and "game_return" in info:  # the whole game (all lives) ended: its raw score
            self.p.games += 1
            self.writer.add_scalar("train/episode_return", info["game_return"], timestep)

    def log_training(self, t: int, epsilon: float) -> None:
        """Every log_freq steps: the mean loss since the last write (one device sync), epsilon and steps/s."""
        self.guard(t, weights=False)
        mean = self.losses.mean_and_reset()
        if mean is not None:
            self.writer.add_scalar("learn/loss", mean, t)
        self.writer.add_scalar("train/epsilon", epsilon, t)
        self.writer.add_scalar("train/steps_per_s", self.meter.rate(t + 1), t)

    # -- evaluation -------------------------------------------------------------------------------------------------

    def evaluate(self, label: int) -> None:
        """Evaluate the online network; best.pkl is saved when the average score reaches the best so far (>=)."""
        cfg, p = self.config, self.p
        self.guard(label)
        self.eval_snapshot = {"env": env_state(self.eval_env), "rng": self.agent.rngs["evaluate"].bit_generator.state}
        self.bar.set_description("eval")
        self.progress.update("eval", self.bar.n, cfg.timestep_num, counts="learn")
        done = []

        def on_episode(index, result):
            done.append(result.score)
            self.bar.set_postfix_str(f"eval game {len(done)}/{cfg.eval_episode_num} score {result.score:g}")

        try:
            results = evaluate(self.agent, self.eval_env, cfg.eval_episode_num, cfg.eval_epsilon,
                               self.agent.rngs["evaluate"], check=self._check_stop, on_episode=on_episode)
        except NonFiniteQ:
            self.diverged(f"the network's Q-values became non-finite (NaN or infinity) in the evaluation at "
                          f"learning step {label}")
        scores = [r.score for r in results]
        average, std = float(np.mean(scores)), float(np.std(scores))
        max_qs = [r.max_q for r in results if not math.isnan(r.max_q)]
        average_max_q = float(np.mean(max_qs)) if max_qs else math.nan
        truncated = sum(bool(r.truncated) for r in results)  # games cut by max_episode_step, not finished
        for tag, value in (("average_score", average), ("score_std", std), ("average_max_q", average_max_q),
                           ("truncated_games", truncated)):
            self.writer.add_scalar(f"evaluate/{tag}", value, label)
        logger.info("timestep: %d\taverage_score: %s\tscore_std: %s\taverage_max_q: %s\ttruncated_games: %d", label,
                    average, std, average_max_q, truncated)
        write_evaluation(self.run_dir, evaluation_row(label, scores, average_max_q, truncated))
        if average >= p.best_score:
            p.best_score = average
            self.writer.add_scalar("evaluate/max_average_score", average, label)
            save_checkpoint(self.agent.net, self.path("best.pkl"), self.config.env_id)
            logger.info("timestep: %d\tmax_average_score: %s\tsaved %s", label, average, self.path("best.pkl"))
        self.writer.flush()
        p.pending_eval, self.eval_snapshot = None, None
        self.bar.set_description("learn")
        self.bar.set_postfix_str(f"last eval {average:g}")
        self.progress.last_eval = (label, average)
        self.progress.update("learn", self.bar.n, cfg.timestep_num)

    def _check_stop(self) -> None:
        if self.stop.signum is not None:
            raise _Interrupted

    # -- saving, stopping, resuming -----------------------------------------------------------------------------------

    def path(self, name: str) -> str:
        return os.path.join(self.run_dir, name)

    def purge_step(self) -> int:
        """The first TensorBoard step this (resumed) run writes again: later events of the run that was cut off
        are discarded by TensorBoard's readers (SummaryWriter's purge_step), so no point appears twice."""
        return self.p.timestep + (1 if self.p.pending_eval is not None else 0)

    def state(self) -> dict:
        """Everything needed to continue this run exactly (see the module docstring)."""
        agent = self.agent
        eval_env = self.eval_snapshot["env"] if self.eval_snapshot else env_state(self.eval_env)
        eval_rng = self.eval_snapshot["rng"] if self.eval_snapshot else agent.rngs["evaluate"].bit_generator.state
        return {
            "format": 1,
            "progress": asdict(self.p),
            "config": self.config.to_dict(),
            "net": agent.net.state_dict(),
            "target_net": agent.target_net.state_dict(),
            "optimizer": agent.optimizer.state_dict(),
            "rngs": {"explore": agent.rngs["explore"].bit_generator.state, "evaluate": eval_rng,
                     "torch": torch.get_rng_state()},
            "train_env": env_state(self.train_env),
            "eval_env": eval_env,
            "obs": None if self.obs is None else torch.from_numpy(self.obs.copy()),
            "losses": self.losses.state(),
            "replay": self.replay.state_dict() if self.config.save_replay else None,
        }

    def save(self) -> None:
        """Write the full training state (atomically; the previous one stays until this one is complete)."""
        self.guard(self.p.timestep)  # a diverged network never replaces the last good state
        self.writer.flush()  # TensorBoard events up to this step are on disk before the state that follows them
        save_state(self.path("state"), self.state(), self.replay if self.config.save_replay else None,
                   timestep=self.p.timestep, explored=self.p.explored, pending_eval=self.p.pending_eval,
                   finished=self.p.finished)
        self.last_saved = self.p.timestep
        write_status(self.run_dir, "running", timestep=self.p.timestep, explored=self.p.explored,
                     best_score=self.p.best_score)

    def restore(self, state: dict, replay_kept: bool) -> None:
        """Load a state from :meth:`state`; ``replay_kept``: the replay memory's frames are as they were saved."""
        agent = self.agent
        self.p = Progress(**state["progress"])
        agent.net.load_state_dict(state["net"])
        agent.target_net.load_state_dict(state["target_net"])
        agent.optimizer.load_state_dict(state["optimizer"])
        agent.rngs["explore"].bit_generator.state = state["rngs"]["explore"]
        agent.rngs["evaluate"].bit_generator.state = state["rngs"]["evaluate"]
        torch.set_rng_state(state["rngs"]["torch"])
        restore_env_state(self.train_env, state["train_env"])
        if not isinstance(self.eval_env, EvaluationEnvs):  # its games start from their own seeds: nothing to restore
            restore_env_state(self.eval_env, state["eval_env"])
        self.obs = None if state["obs"] is None else state["obs"].numpy().copy()
        self.losses.load(state["losses"])
        if replay_kept:
            self.replay.load_state_dict(state["replay"])
        else:  # the replay memory was not kept: refill it before learning goes on (not bit-exact)
            self.refill = (self.p.timestep < self.config.timestep_num or self.p.pending_eval is not None
                           or self.final_step_due())
        if self.config.timestep_num < self.p.timestep:
            raise UserError(f"--timestep_num {self.config.timestep_num} is below the {self.p.timestep} learning "
                            "steps this run has already done")
        if self.p.finished and self.config.timestep_num > self.p.timestep:
            self.p.finished = False  # a larger budget: train on, and evaluate the new final network
            if self.p.final_step:  # step timestep_num was taken for the final evaluation: go on after it
                self.p.timestep, self.p.final_step = self.p.timestep + 1, False
        self.last_saved = self.p.timestep

    def resume(self, loaded: tuple[dict, dict] | None | bool = True) -> dict | None:
        """Continue from the run folder's saved state (its manifest; or ``loaded``, the (state, manifest) already
        read and checked), None if no state was saved yet. With the replay memory kept, the frames overwritten since
        that state are put back from the undo journal first."""
        state_dir = self.path("state")
        loaded = load_state(state_dir) if loaded is True else loaded
        if loaded is None:
            return None
        state, manifest = loaded
        replay_kept = bool(manifest["replay"] and self.config.save_replay and not self.replay.frames_file_created)
        if replay_kept:
            journal = undo_journal(state_dir, manifest["sequence"])
            if os.path.exists(journal):
                restored = self.replay.undo(journal)
                logger.info("replay memory: %d frames overwritten after the saved state were put back", restored)
            self.replay.start_journal(journal)
        elif manifest["replay"]:
            logger.info("the replay memory's frames file is missing or damaged: the memory is refilled")
        self.restore(state, replay_kept)
        manifest["replay"] = replay_kept
        return manifest

    def stop_if_requested(self) -> None:
        if self.stop.signum is None:
            return
        self.save()
        name = signal.Signals(self.stop.signum).name
        write_status(self.run_dir, "stopped", timestep=self.p.timestep, explored=self.p.explored, signal=name)
        self.progress.update("stopped", self.p.timestep, self.config.timestep_num, counts="learn")
        logger.info("Stopped by %s at learning step %d; state saved", name, self.p.timestep)
        raise Stopped(f"stopped by {name} at learning step {self.p.timestep} (exploration step {self.p.explored}); "
                      f"the training state is saved: continue with  python run.py --resume {self.run_dir}",
                      self.stop.exit_status)

    def guard(self, step: int, weights: bool = True) -> None:
        """The NaN guard: stop (exit 3) if a loss so far or, with ``weights``, a weight is NaN or infinite."""
        bad = self.losses.first_nonfinite()
        if bad is not None:
            self.diverged(f"the loss became non-finite (NaN or infinity) at learning step {bad}")
        if weights and not self.agent.weights_are_finite():
            self.diverged(f"the network's weights became non-finite (NaN or infinity) by learning step {step}")

    def diverged(self, what: str) -> None:
        write_status(self.run_dir, "diverged", timestep=self.p.timestep, last_saved=self.last_saved)
        logger.error("%s; the run is stopped", what)
        kept = (f"the last good state (learning step {self.last_saved}) is kept: continue it with a lower learning "
                f"rate, e.g.  python run.py --resume {self.run_dir} --learning_rate {self.config.learning_rate / 2:g}"
                if self.last_saved is not None else "no training state was saved before it")
        raise Diverged(f"{what}; the run is stopped and {kept}")


class _LossMeter:
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
