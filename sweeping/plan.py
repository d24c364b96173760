"""The grid as a list of runs, each with its deterministic folder name and the exact program options.

A training run is ``run.py --model M --env_id G --seed S [--double] <grid run_options> <model_options[M]>
<words after -->`` in the folder ``<Model>_<env id>_seed<S>`` (Model with the Double prefix); a conversion run is
``convert.py --model <that Dqn run folder> --seed S <convert_options>`` in ``ConvSNN_<env id>_T<time>_seed<S>``;
a play run (``--play_games`` N > 0) is ``run.py --method play --model_path <a training run folder> --use_spike_monitor
--eval_episode_num N --seed S`` with the training run's horizon, evaluation epsilon, device and neuron kernel
(``<play_options>`` after them) in ``<training run's name>_play``.
The options are checked here, before anything starts, with run.py's and convert.py's own parsers.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import asdict, dataclass, field

from plotting.common import DOUBLE
from sweeping.options import SweepOptions, expand_games
from utils.cli import UserError, options_parser
from utils.runs import RunFolder

#: Options the sweep sets itself for every training / conversion run.
RUN_SET = ("model", "env_id", "seed", "double", "method", "model_path", "output_dir", "run_name", "resume", "gpu")
CONVERT_SET = ("model", "game", "seed", "output_dir", "run_name", "gpu")


@dataclass
class RunSpec:
    name: str
    kind: str  # train | convert
    model: str  # Dqn, DoubleDsqn, ... or ConvSNN
    env_id: str
    seed: int
    words: list[str]  # the program's options, without --output_dir / --run_name / --resume
    after: str | None = None  # a conversion: the name of the Dqn run it converts
    config: dict = field(default_factory=dict)  # every option's value (progress and cost estimates)

    @property
    def program(self) -> str:
        return "conversion_based_snn/convert.py" if self.kind == "convert" else "run.py"

    @property
    def source_option(self) -> str:
        """The option that names the run this one starts from (a conversion's --model, a play's --model_path)."""
        return "--model_path" if self.kind == "play" else "--model"

    def command(self) -> str:
        """The equivalent command by hand (from the repository, writing into runs/)."""
        model = [self.source_option, f"runs/{self.after}"] if self.after else []
        return shlex.join(["python", self.program, *model, *self.words, "--run_name", self.name])


def _parse(parser, words: list[str], what: str) -> dict:
    def error(message: str):
        raise UserError(f"{what}: {message}")

    parser.error = error  # one line, naming the runs it is about
    return vars(parser.parse_args(words))


def _run_parser():
    from agent.config import Config

    return options_parser("run.py", "", Config)  # run.py's own options (run.build_parser), without its help text


def _check_methods(method: str, given: dict, what: str) -> None:
    """run.py's refusal of an option its group does not take with ``method`` (agent.config.check_methods), before
    anything starts, naming the sweep option that holds it."""
    from agent.config import check_methods

    try:
        check_methods(method, given)
    except UserError as error:
        raise UserError(f"{what}: {error}") from None


def _convert_parser():
    from conversion_based_snn.config import ConvertConfig

    return options_parser("convert.py", "", ConvertConfig)  # convert.py's own options, without its help text


def build_plan(options: SweepOptions, run_words: list[str]) -> list[RunSpec]:
    """Every run of the grid, training runs first (games x models x seeds), then the conversions."""
    from agent.config import Config

    games = expand_games(options.games)
    shared_words = [*options.grid_run_words, *run_words]
    for name in _parse(_run_parser(), shared_words, "run.py options"):
        if name in RUN_SET:
            raise UserError(f"run.py option --{name} is set by the sweep for each run; leave it out (games, models "
                            "and seeds: --games, --models, --seeds)")
    specs, configs = [], {}
    for model in options.models:
        base, double = (model[len(DOUBLE):], True) if model.startswith(DOUBLE) else (model, False)
        words = [*options.grid_run_words, *options.model_words.get(model, []), *run_words]
        given = _parse(_run_parser(), words, f"run.py options of {model}")
        if set(given) & set(RUN_SET):
            raise UserError(f"model_options of {model}: --{min(set(given) & set(RUN_SET))} is set by the sweep")
        _check_methods("learn", given, f"run.py options of {model}")
        configs[model] = Config(**{**given, "model": base, "double": double}).to_dict()
        for env_id in games:
            for seed in options.seeds:
                head = ["--model", base, "--env_id", env_id, "--seed", str(seed), *(["--double"] if double else [])]
                specs.append(RunSpec(f"{model}_{env_id}_seed{seed}", "train", model, env_id, seed, [*head, *words],
                                     config={**configs[model], "env_id": env_id, "seed": seed}))
    specs.sort(key=lambda s: (s.seed, options.models.index(s.model), games.index(s.env_id)))
    specs += conversions(options, games, specs) + plays(options, specs)
    return specs


#: The options of a training run that its play run keeps: the same horizon, evaluation policy, device and kernel.
PLAY_KEEPS = ("max_episode_step", "eval_epsilon", "device", "backend")


def plays(options: SweepOptions, train: list[RunSpec]) -> list[RunSpec]:
    """A play run of each training run's best checkpoint (after it finished), with the spike monitor, so that
    every model of the grid gets a play score and the spiking ones their spike and operation counts."""
    if not options.play_games:
        return []
    extra = shlex.split(options.play_options or "")
    given = _parse(_run_parser(), extra, "--play_options")
    taken = sorted(set(given) & (set(RUN_SET) | {"eval_episode_num", "use_spike_monitor"}))
    if taken:
        raise UserError(f"--play_options: --{taken[0]} is set by the sweep for each play run; leave it out")
    _check_methods("play", given, "--play_options")
    out = []
    for spec in train:
        if spec.kind != "train":
            continue
        kept = [word for key in PLAY_KEEPS if key not in given
                for word in (f"--{key}", str(spec.config[key]))]
        words = ["--method", "play", "--use_spike_monitor", "--eval_episode_num", str(options.play_games),
                 "--seed", str(spec.seed), *kept, *extra]
        config = {**{k: spec.config[k] for k in PLAY_KEEPS}, **given, "method": "play", "use_spike_monitor": True,
                  "eval_episode_num": options.play_games, "seed": spec.seed, "env_id": spec.env_id,
                  "model": spec.config["model"], "T": spec.config["T"]}
        out.append(RunSpec(f"{spec.name}_play", "play", spec.model, spec.env_id, spec.seed, words, after=spec.name,
                           config=config))
    return out


def conversions(options: SweepOptions, games: list[str], train: list[RunSpec]) -> list[RunSpec]:
    if not options.convert:
        return []
    from conversion_based_snn.config import ConvertConfig

    words = shlex.split(options.convert_options or "")
    given = _parse(_convert_parser(), words, "--convert_options")
    taken = sorted(set(given) & set(CONVERT_SET))
    if taken:
        raise UserError(f"--convert_options: --{taken[0]} is set by the sweep for each conversion; leave it out")
    config = {**asdict(ConvertConfig()), **given}
    wanted = games if any(g.lower() == "all" for g in options.convert) else expand_games(options.convert)
    outside = [g for g in wanted if g not in games]
    if outside:
        raise UserError(f"--convert {outside[0]}: that game is not in the grid's --games")
    return [RunSpec(f"ConvSNN_{s.env_id}_T{config['time']}_seed{s.seed}", "convert", "ConvSNN", s.env_id, s.seed,
                    [*words, "--seed", str(s.seed)], after=s.name, config={**config, "seed": s.seed, "game": s.env_id})
            for s in train if s.model == "Dqn" and s.env_id in wanted]


def check_existing(specs: list[RunSpec], runs_dir: str) -> None:
    """Refuse a grid whose options differ from those an existing run folder of the same name was made with (except
    the options a resume may change, such as a larger --timestep_num): its results would be mixed in."""
    from agent.config import RESUMABLE_OVERRIDES

    free = {"output_dir", "run_name", "resume", "model_path", "program", "command", "n_actions", "git", "gpu",
            *RESUMABLE_OVERRIDES}
    for spec in specs:
        folder = RunFolder(os.path.join(runs_dir, spec.name))
        saved = folder.config
        if saved is None:
            continue
        if spec.kind in ("convert", "play"):
            status = folder.status or {}
            if status.get("status") != "finished":
                continue  # an unfinished conversion or play is made again with the new options
            free_here = {"model", "output_dir", "run_name", "device", "gpu", "program", "command", "epsilon",
                         "model_path", "T", "double"}
        else:
            free_here = free
        for key, value in spec.config.items():
            if key not in free_here and key in saved and saved[key] != value:
                raise UserError(f"{folder.path} was made with --{key} {saved[key]}, the grid asks for "
                                f"--{key} {value}: use another --sweep_dir, or delete that run folder to make it again")
