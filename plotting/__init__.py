"""Figures, score tables, statistics over seeds and energy estimates from the runs of run.py and convert.py.

    python utils/plot.py
    python utils/plot.py --runs_dir runs other_machine/runs --games Breakout Pong --models Dqn Dsqn --format pdf

Inputs (every folder option takes one or more folders):
    --runs_dir                one folder per run (default runs/): config.json ("program": run.py or convert.py,
                              model, env_id or game, seed, double, ...), tensorboard/ (run.py's TensorBoard events,
                              read with TensorBoard's EventAccumulator), summary.json (run.py play, convert.py),
                              result.csv (convert.py's episodes). A run still going or that died is read as far
                              as it got; what it has not written yet (tensorboard/, summary.json) is skipped with
                              a note. A folder that holds a config.json is read as one run.
Outputs in --output_dir (default figures/):
    score_{game}, max_q_{game}, loss_{game}   curves over training steps, one line per model (mean over seeds)
    hns                                       human-normalised scores per game and model, with mean and median
    spikes_{game}, energy_{game}              firing rate / spikes per action per layer; operations and energy
    performance_profile                       fraction of runs above each human-normalised score, 95% bands
    scores.md, scores.csv, energy.csv         the tables (definitions in scores.md)
    per_seed_scores.csv                       game, model, seed, runs, score used and its HNS per seed
    statistics.md, statistics.csv             IQM, mean, median of HNS and P(model > DQN) with 95% intervals

Definitions (also written into scores.md and statistics.md):
* runs of the same model and game form a group; a run.py run with "double": true belongs to the model
  Double<model> (DoubleDqn, DoubleDsqn, ...), a model of its own everywhere; the conversion SNNs are one model per
  T, schedule and neuron type (ConvSNN_T500, ConvSNN_T100_same_step_LIF, ...; --models ConvSNN selects them all);
* best eval average of a group = the mean over its runs of each run's best evaluate/average_score (each run
  saves its best checkpoint, so this is the score of the checkpoints a user would play);
* play average +- std = over all games of all play runs of the group pooled (population std);
* the score: ONE rule for every row of a table (--score): play = the play average (the play of a run's best
  checkpoint; a conversion's own games), best_eval = the best eval average; auto (default) = play when every run
  of every compared group was played, else best_eval. A group without a score under the rule is n/a (its other
  score stays in its own column); the two are never mixed. HNS = 100 * (score - random) / (human - random);
  % DQN = 100 * (score - random) / (the Dqn group's score - random), the share of DQN's gain over random play (right
  for negative scores; n/a when DQN is not above random); % Double DQN the same with the DoubleDqn group;
* horizon = max_episode_step of the group's runs; a score with games cut by it is marked, and the headings of
  scores.md and statistics.md say when a horizon is not the paper's 18,000 steps;
* per seed the same rule gives a score; a play or convert run counts for the seed of the learn run whose
  checkpoint it used (found from the checkpoint path it recorded), else for its own --seed;
* statistics (plotting/statistics.py, after Agarwal et al. 2021): IQM, mean and median of the per-seed HNS,
  performance profiles and the probability of improvement over Dqn, with bootstrap percentile 95% intervals:
  --bootstrap runs (default) redraws the runs within each game (no interval for a model with one seed per game),
  --bootstrap games redraws the games; --bootstrap_samples and --bootstrap_seed make them reproducible.
  Written with numpy and scipy, not with the rliable library: rliable needs the arch package, which does not
  import next to pandas 3.
"""
