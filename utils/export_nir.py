"""Export a spiking Q-network to NIR, the Neuromorphic Intermediate Representation (docs/NIR.md).

    python utils/export_nir.py --model runs/Dsqn_BreakoutNoFrameskip-v4_seed0_2026-11-29_10-00-00 --out agent.nir
    python utils/export_nir.py --model runs/ConvSNN_BreakoutNoFrameskip-v4_T500_2026-11-30_09-00-00 --out snn.nir

--model is a Dsqn, DsqnIF or DsqnSpike checkpoint saved by run.py (best.pkl) or its run folder, or a converted
network saved by convert.py (snn.pt) or its run folder. The graph is written atomically to --out (HDF5, nir.write).
Then, unless --check_frames 0, the file is read back with nir.read and run beside the network on random frame
stacks, step by step in PyTorch (neural_network/nir_reader.py) and in snnTorch and Norse where they are installed
and can run the graph, and the agreement is printed. One line per importer says which cannot run the graph, and why.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from utils import cli
from utils.cli import UserError, check_path, option, options_parser, require_extra, run_cli
from utils.files import read_model_file
from utils.runs import RunFolder

PROG = "export_nir.py"
SPIKING_HYPERPARAMETERS = ("tau", "v_threshold", "v_reset")


@dataclass
class ExportConfig:
    model: str | None = option(None, "a Dsqn, DsqnIF or DsqnSpike checkpoint saved by run.py or its run folder, or "
                                     "snn.pt saved by convert.py or its run folder")
    out: str | None = option(None, "the NIR file to write, e.g. agent.nir")
    T: int | None = option(None, "simulation steps per action: the read-out integrates over T steps (default: the "
                                 "checkpoint's T, or the conversion run's --time, else 500)", parse=cli.positive_int)
    dt: float = option(1e-4, "seconds of NIR time per simulation step (NIR time constants are tau x dt)",
                       parse=cli.positive_float)
    threshold: str = option("float32", "float32: write the largest float32 below v_th, so that NIR's v > v_th is our "
                                       "V >= v_th exactly; nominal: write v_th", choices=("float32", "nominal"))
    schedule: str | None = option(None, "converted network only: delayed (one step per connection) or same_step "
                                        "(default: the one it was converted with)", choices=("delayed", "same_step"))
    tau: float | None = option(None, "Dsqn/DsqnSpike: LIF time constant (default: the run's config.json, else 2)",
                               parse=cli.greater_than_one)
    v_threshold: float | None = option(None, "spiking checkpoints: firing threshold (default: the run's, else 1)",
                                       parse=cli.positive_float)
    v_reset: float | None = option(None, "spiking checkpoints: reset potential, -1 for a soft reset (default: the "
                                         "run's, else 0)", parse=cli.finite_float)
    check_frames: int = option(2, "random frame stacks for the check after writing (0: no check)",
                               parse=cli.non_negative_int)
    overwrite: bool = option(False, "replace --out if it exists (never the --model file itself)")


@dataclass
class Exported:
    graph: object  # nir.NIRGraph
    network: object  # the QNetwork or SpikingNetwork it came from
    schedule: str | None
    note: str


def build_parser():
    return options_parser(PROG, __doc__, ExportConfig)


def resolve_model(path: str) -> tuple[str, bool]:
    """The model file and whether it is a converted network (snn.pt) rather than a run.py checkpoint."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(path):
        for name in ("snn.pt", "best.pkl"):
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name), name == "snn.pt"
        raise UserError(f"{path} is a folder with neither best.pkl (a run.py run) nor snn.pt (a convert.py run)")
    record = read_model_file(path, "readable as a weights-only torch file: it is damaged, not a model saved by "
                             "run.py or convert.py, or holds objects other than tensors (refused for safety)",
                             UserError)
    return path, isinstance(record, dict) and "state_dict" in record and "node_type" in record


def source_name(path: str) -> str:
    """The model file as the metadata names it: its run folder and file name, never an absolute path."""
    return f"{os.path.basename(os.path.dirname(path))}/{os.path.basename(path)}"


def export_checkpoint(config: ExportConfig, path: str) -> Exported:
    from agent.config import Config
    from neural_network import build_network, load_checkpoint, read_checkpoint
    from neural_network.nir_export import qnetwork_to_nir

    if config.schedule is not None:
        raise UserError("--schedule applies to a network converted by convert.py only")
    state, info = read_checkpoint(path)
    if info.model == "Dqn":
        raise UserError(f"{path} holds a Dqn network, which has no spiking neurons to export; convert it with "
                        "conversion_based_snn/convert.py and export that run's snn.pt")
    trained = RunFolder(os.path.dirname(path)).config_of("run.py")
    defaults = Config()  # run.py's options
    hyper = {name: getattr(config, name) if getattr(config, name) is not None
             else trained.get(name, getattr(defaults, name)) for name in SPIKING_HYPERPARAMETERS}
    T = config.T or info.T or defaults.T
    net = build_network(info.model, info.n_actions, **{**defaults.network_kwargs(), **hyper, "T": T,
                                                       "history_len": int(state["conv1.weight"].shape[1])})
    load_checkpoint(net, path, (state, info))
    net.eval().requires_grad_(False)
    graph = qnetwork_to_nir(net, dt=config.dt, threshold_rule=config.threshold, source=source_name(path))
    hyper_text = ", ".join(f"{name} {value}" for name, value in hyper.items())
    origin = "the run's config.json" if trained else "run.py's defaults"
    return Exported(graph, net, None, f"{info.model}, T={T}, {hyper_text} (options given, else {origin})")


def export_converted(config: ExportConfig, path: str) -> Exported:
    import torch

    from conversion_based_snn.config import ConvertConfig
    from conversion_based_snn.snn.simulate import SpikingNetwork
    from neural_network.nir_export import spiking_network_to_nir

    given = [f"--{name}" for name in SPIKING_HYPERPARAMETERS if getattr(config, name) is not None]
    if given:
        raise UserError(f"{', '.join(given)} apply to run.py checkpoints; a converted network keeps its own neurons")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            snn = SpikingNetwork.load(path)
    except Exception as error:  # noqa: BLE001 - any failure to read an untrusted file is the same answer
        raise UserError(f"{path} is not a converted network saved by convert.py (snn.pt): it is damaged or "
                        f"incomplete ({type(error).__name__})") from None
    if not all(torch.isfinite(p).all() for p in snn.parameters()):
        raise UserError(f"{path} holds non-finite weights (NaN or infinity) and is refused")
    T = config.T or RunFolder(os.path.dirname(path)).config_of("convert.py").get("time") or ConvertConfig().time
    graph = spiking_network_to_nir(snn, T, schedule=config.schedule, dt=config.dt, threshold_rule=config.threshold,
                                   source=source_name(path))
    schedule = config.schedule or snn.schedule
    return Exported(graph, snn, schedule, f"converted network ({snn.node_type}, {schedule} schedule), T={T}")


def check(exported: Exported, out: str, n: int) -> list[str]:
    """Read ``out`` back, run it beside the network on ``n`` random frame stacks, in our simulator and in each of
    snnTorch and Norse that is installed and can run it; one line of findings per run."""
    import importlib.util

    import nir
    import torch

    from neural_network.architecture import frame_stack_shape
    from neural_network.nir_export import IMPORTERS, importer_limits
    from neural_network.nir_reader import compare

    graph = nir.read(out)
    generator = torch.Generator().manual_seed(0)
    channels = int(graph.nodes["input"].input_type["input"][0])
    frames = torch.randint(0, 256, (n, *frame_stack_shape(channels)), generator=generator, dtype=torch.uint8)
    limits = importer_limits(graph)
    runners = [(None, "simulated step by step")] + [
        (importer, f"run in {IMPORTERS[importer]}") for importer in IMPORTERS
        if not limits.get(importer) and importlib.util.find_spec(importer) is not None]
    lines = []
    for importer, how in runners:
        agreement = compare(exported.network, graph, frames, schedule=exported.schedule, importer=importer)
        differ = {layer: count for layer, count in agreement.layers.items() if count}
        spikes = ", ".join(f"{layer} {count}" for layer, count in agreement.spikes.items())
        verdict = ("identical spike trains in every layer" if not differ else "spike trains differ in " + ", ".join(
            f"{layer} ({count} of {agreement.spikes[layer]} spikes)" for layer, count in differ.items()))
        lines.append(f"check: {out} read back and {how} on {n} random frame stacks beside the network: {verdict} "
                     f"(network spikes: {spikes}); greedy actions equal in {agreement.actions_equal}/"
                     f"{agreement.samples}; largest |Q difference| {agreement.max_q_difference:.3g}")
    return lines


def importer_notes(graph) -> list[str]:
    """One line per importer that cannot run ``graph`` whole, and how to import it."""
    from neural_network.nir_export import IMPORTERS, importer_limits

    notes = [f"  {IMPORTERS[importer]} cannot run this graph: {'; '.join(reasons)}"
             for importer, reasons in importer_limits(graph).items() if reasons]
    dt = graph.metadata["dt"]
    notes.append(f"  import: snntorch.import_nir.import_from_nir(nir.read(FILE)) (assumes dt 1e-4 s); "
                 f"norse.torch.from_nir(nir.read(FILE), dt={dt:g}); Q is output {graph.metadata['q_output']} "
                 "after step T; docs/NIR.md")
    return notes


def main(argv: list[str] | None = None) -> None:
    config = ExportConfig(**vars(build_parser().parse_args(argv)))
    require_extra("nir", "the nir package", "nir", "exporting to NIR")
    if not config.model:
        raise UserError("no model given; pass --model PATH to a spiking checkpoint or run folder, or an snn.pt")
    if not config.out:
        raise UserError("no output file given; pass --out FILE, e.g. --out agent.nir")
    out = check_path(config.out, "--out", reserve=8)
    if os.path.isdir(out):
        raise UserError(f"--out {out} is a folder; give a file name such as agent.nir")
    if os.path.exists(os.path.dirname(out)) and not os.path.isdir(os.path.dirname(out)):
        raise UserError(f"--out {out}: {os.path.dirname(out)} is a file, not a folder")
    path, converted = resolve_model(config.model)
    if os.path.exists(out) and os.path.samefile(out, path):
        raise UserError(f"--out {out} is the --model file itself; give another file name such as agent.nir")
    if os.path.lexists(out) and not config.overwrite:
        raise UserError(f"--out {out} exists; give another file name, or pass --overwrite to replace it")
    exported = (export_converted if converted else export_checkpoint)(config, path)

    from neural_network.nir_export import graph_bytes
    from utils.runs import atomic_write, shown

    data = graph_bytes(exported.graph)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    atomic_write(out, lambda file: file.write(data))
    metadata = exported.graph.metadata
    print(f"wrote {shown(out)} ({len(data) / 1e6:.1f} MB): {exported.note}; {len(exported.graph.nodes)} nodes, "
          f"dt {metadata['dt']:g} s, NIR v_threshold {metadata['nir_v_threshold']} ({config.threshold} rule)",
          flush=True)
    print(f"  neurons: {metadata['neurons']}; Q: {metadata['readout']}", flush=True)
    for line in importer_notes(exported.graph):
        print(line, flush=True)
    if config.check_frames:
        for line in check(exported, out, config.check_frames):
            print(line, flush=True)


def cli(argv: list[str] | None = None) -> None:
    run_cli(lambda: main(argv), PROG, user_errors=("neural_network.CheckpointError",))


if __name__ == "__main__":
    cli()
