"""The DQN training loop, read top to bottom in :meth:`Trainer.learn` (its run lifecycle is agent.lifecycle).

    for each step of the training env, the first replay_start_size (the learning-starts threshold) and then
    learning steps t = 0 .. timestep_num - 1:
        before the threshold   take a random action and store the transition: no update, not a learning step
                               (the last one is followed by a reset: learning starts with a new episode)
        from it on, step t     act epsilon-greedily (epsilon falls linearly over final_epsilon_frame steps), store
                               the transition, and
                               every update_freq steps:          one update on a minibatch (agent.Agent.update)
                               every target_net_update_freq:     copy the online network to the target network
                               every eval_freq steps (0 too):    evaluate (eval_episode_num full games), save
                                                                 best.pkl if the average score >= the best so far
                               every checkpoint_freq steps:      save the full training state
    then                       the final evaluation (label timestep_num), then save the final state.
                               --final_eval one_more_step (the default, the original's schedule): the loop runs on
                               into step timestep_num (act, store and, on their schedule, update and copy the target)
                               and evaluates after it, as at any step that is a multiple of eval_freq, unless step
                               timestep_num - 1 ended an episode (the original's episode loop then stopped before
                               step timestep_num; no final evaluation). --final_eval at_budget: evaluate the network
                               after exactly timestep_num steps, always.

A life loss and a time-limit truncation end a transition (done = True) while the game goes on after a life loss
(the training env's EpisodicLife). The full state (weights, optimizer, counters, every random generator, both
envs with their emulator state, with --save_replay the replay memory) is saved atomically (agent.persistence);
``--resume`` restores it and continues exactly where it was; resumed without its replay memory, the run first
refills it with replay_start_size random steps (not counted). SIGINT / SIGTERM save the state and stop (exit
130 / 143); a non-finite loss or Q-value stops the run (exit 3) keeping the last good state.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from neural_network import save_checkpoint

from .config import Config, epsilon_at
from .evaluation import NonFiniteQ, evaluate
from .lifecycle import Run, StopRequest
from .persistence import Progress

logger = logging.getLogger("file_logger")


class Trainer:
    """A learning run: the agent (online and target networks, optimizer), both envs, the replay memory, the
    counters (:class:`agent.persistence.Progress`), and :attr:`run`, its lifecycle (agent.lifecycle.Run)."""

    def __init__(self, config: Config, agent, train_env, eval_env, replay, run_dir: str, writer,
                 stop: StopRequest | None = None):
        self.config, self.agent, self.replay = config, agent, replay
        self.train_env, self.eval_env = train_env, eval_env
        self.run_dir, self.writer = run_dir, writer  # the run folder; the TensorBoard writer
        self.p = Progress()
        self.obs: np.ndarray | None = None  # the frame stack the agent acts on next; None: reset the env first
        self.video = None  # --capture_video: a utils.tracking.TrainingVideo, told of every training env step
        self.run = Run(self, stop)

    def learn(self) -> float:
        """Run (or continue) the whole budget; returns the best evaluation average score."""
        cfg, p, run = self.config, self.p, self.run
        learning_starts = cfg.replay_start_size
        with run.running():
            if run.refill:  # resumed without its replay memory: fill it again first (random steps, not counted)
                run.phase("refill")
                for _ in range(learning_starts):
                    self.env_step(self.random_action(), log_games=False)
                    run.tick()
                    run.stop_if_requested()
                p.explored, self.obs = learning_starts, None
            while p.explored < learning_starts or p.timestep < cfg.timestep_num:
                if p.explored < learning_starts:  # a random action, stored; no update, not a learning step
                    run.phase("explore")
                    self.env_step(self.random_action(), log_games=False)
                    p.explored += 1
                    run.tick()
                    if p.explored == learning_starts:
                        self.obs = None  # learning starts from a reset
                else:
                    run.phase("learn")
                    t = p.timestep
                    if p.pending_eval is None:  # (a resumed run may continue with the evaluation of step t)
                        self.train_step(t)
                        run.tick(done=t + 1)
                        if t % cfg.eval_freq == 0:
                            p.pending_eval = t
                    if p.pending_eval is not None:
                        self.evaluate(p.pending_eval)
                    p.timestep = t + 1
                    if t % cfg.checkpoint_every == 0:
                        run.save()
                run.stop_if_requested()
            run.phase("learn")  # (also where no learning step is left: the final evaluation shows on it)
            if not p.finished:
                self.final_evaluation()
        return p.best_score

    def train_step(self, t: int) -> None:
        """Learning step t: act epsilon-greedily, store, and on their schedule update the online network and copy it
        to the target network."""
        cfg, agent, run = self.config, self.agent, self.run
        epsilon = epsilon_at(t, cfg.init_epsilon, cfg.final_epsilon, cfg.final_epsilon_frame)
        action, q = agent.act(self.current_obs(), epsilon, agent.rngs["explore"])
        run.check_q(q, t)
        self.env_step(action, log_games=True, timestep=t)
        self.p.last_done = self.obs is None
        if t % cfg.update_freq == 0:
            run.losses.add(agent.update(self.replay.sample(cfg.minibatch_size)), t)
        if t % cfg.target_net_update_freq == 0:
            agent.sync_target()
        if (t + 1) % cfg.log_freq == 0:
            run.log_training(t, epsilon)

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
        self.run.save()

    def final_step_due(self) -> bool:
        """Step timestep_num is still to be taken before the final evaluation (--final_eval one_more_step)."""
        p = self.p
        return (self.config.final_eval == "one_more_step" and not p.finished and p.pending_eval is None
                and not p.final_step and not p.last_done)

    def random_action(self) -> int:
        return int(self.agent.rngs["explore"].integers(self.agent.n_actions))

    def current_obs(self) -> np.ndarray:
        if self.obs is None:
            self.obs, _ = self.train_env.reset()
        return self.obs

    def env_step(self, action: int, log_games: bool, timestep: int = 0) -> None:
        """One step of the training env, stored in the replay memory."""
        obs = self.current_obs()
        next_obs, reward, terminated, truncated, info = self.train_env.step(action)
        done = terminated or truncated
        self.replay.append(obs, action, reward, done, next_obs)
        self.obs = None if done else next_obs
        self.run.env_stepped(info, log_games, timestep)

    def evaluate(self, label: int) -> None:
        """Evaluate the online network; best.pkl is saved when the average score reaches the best so far (>=)."""
        cfg, p, run = self.config, self.p, self.run
        run.evaluation_begins(label)
        try:
            results = evaluate(self.agent, self.eval_env, cfg.eval_episode_num, cfg.eval_epsilon,
                               self.agent.rngs["evaluate"], check=run.check_stop, on_episode=run.evaluated_game)
        except NonFiniteQ:
            run.diverged(f"the network's Q-values became non-finite (NaN or infinity) in the evaluation at "
                         f"learning step {label}")
        average = run.record_evaluation(label, results)
        if average >= p.best_score:
            p.best_score = average
            self.writer.add_scalar("evaluate/max_average_score", average, label)
            save_checkpoint(self.agent.net, self.path("best.pkl"), self.config.env_id)
            logger.info("timestep: %d\tmax_average_score: %s\tsaved %s", label, average, self.path("best.pkl"))
        self.writer.flush()
        p.pending_eval = None
        run.evaluation_ends(label, average)

    def path(self, name: str) -> str:
        return os.path.join(self.run_dir, name)
