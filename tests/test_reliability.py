"""Every failure a user can cause or meet ends in one line with its own exit status, and nothing on disk is lost
(docs/RELIABILITY.md): full disks (a real tmpfs), damaged or hand-edited run folders, a folder in use, names longer
than the file system allows, bad sweep / bench inputs, Ctrl-C during imports, and every option of every program
given bad values.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from conftest import GAME, REPO_ROOT, paper_network

import run as run_py
from agent.persistence import load_state
from utils.cli import run_cli

TINY = ["--model", "Dqn", "--env_id", GAME, "--timestep_num", "30", "--replay_start_size", "16", "--minibatch_size",
        "8", "--replay_memory_size", "48", "--eval_freq", "10", "--eval_episode_num", "1", "--max_episode_step", "60",
        "--target_net_update_freq", "10", "--checkpoint_freq", "5", "--log_freq", "10", "--save_replay", "--device",
        "cpu", "--seed", "3"]


def error_lines(err: str) -> list[str]:
    """stderr without the progress bar (redrawn with carriage returns): the lines a user reads as messages."""
    return [line for line in re.split(r"[\r\n]", err) if line.strip() and not re.search(r"\d+/\d+ \[", line)
            and not re.match(r"^\s*(explore|learn|eval)?:?\s*\d+%", line)]


def one_line(capsys, program, argv, status: int, *fragments: str) -> str:
    """Run ``program(argv)`` (an entry point); it must exit with ``status`` and exactly one line on stderr."""
    with pytest.raises(SystemExit) as exit_info:
        program(argv)
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert exit_info.value.code == status and len(lines) == 1 and "Traceback" not in err, (exit_info.value.code, err)
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def digest(folder) -> dict:
    """Every file and folder under ``folder`` with its content's hash: what 'nothing changed' compares."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), folder) + "/"] = "folder"
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as file:
                found[os.path.relpath(path, folder)] = hashlib.sha256(file.read()).hexdigest()
    return found


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished tiny Dqn run with --save_replay (its 48-transition replay memory has wrapped: an undo journal)."""
    out = tmp_path_factory.mktemp("finished")
    run_py.main([*TINY, "--output_dir", str(out), "--run_name", "run"])
    return out / "run"


# -- a full disk -------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def small_disk(folder, size: str):
    """A real tmpfs of ``size`` mounted on ``folder`` (root only); the test is skipped where none can be mounted."""
    os.makedirs(folder, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                                           capture_output=True).returncode:
        pytest.skip("no tmpfs can be mounted here (needs root); the simulated full disk of test_resume.py runs")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_full_disk_on_a_real_tmpfs_keeps_the_state_and_says_how_to_resume(tmp_path, capsys):
    disk = tmp_path / "disk"
    with small_disk(disk, "40m"):  # the first state (27 MB) and best.pkl fit, a second state does not
        line = one_line(capsys, run_py.cli, [*TINY, "--output_dir", str(disk), "--run_name", "run"], 4,
                        "No space left on device", f"python run.py --resume {disk / 'run'}")
        assert "state-" in line  # names the file it was writing
        state, manifest = load_state(str(disk / "run" / "state"))  # the previous state is complete
        assert state["progress"]["timestep"] == manifest["timestep"] >= 0
        subprocess.run(["mount", "-o", "remount,size=200m", str(disk)], check=True)  # the user frees space
        run_py.cli(["--resume", str(disk / "run")])
        assert json.load(open(disk / "run" / "status.json"))["status"] == "finished"
        # A --save_replay run resumes on a disk with less free space than its (already allocated) frames file.
        frames = os.path.getsize(disk / "run" / "state" / "replay-frames.u8")
        free = shutil.disk_usage(disk).free
        with open(disk / "filler", "wb") as filler:
            filler.write(b"\0" * (free - frames // 2))
        capsys.readouterr()
        run_py.cli(["--resume", str(disk / "run")])
        assert "needs" not in capsys.readouterr().err


# -- damaged, hand-edited or live run folders --------------------------------------------------------------------------


def _json(path, change):
    with open(path) as file:
        value = json.load(file)
    with open(path, "w") as file:
        json.dump(change(value), file)


def _replace_by_file(path):
    shutil.rmtree(path)
    path.write_text("x")


def _replace_by_folder(path):
    path.unlink()
    path.mkdir()


def _journal(run_dir):
    manifest = json.load(open(run_dir / "state" / "manifest.json"))
    return run_dir / "state" / f"replay-undo-{manifest['sequence']:06d}.bin"


def _journal_row_out_of_range(run_dir):
    data = _journal(run_dir).read_bytes()
    record = np.int64(10**9).tobytes() + bytes(84 * 84)
    _journal(run_dir).write_bytes(data[:8] + record + np.uint32(zlib.crc32(record)).tobytes() + data[8:])


def _journal_bit_flip(run_dir):
    """A well-formed record (row 0 as the frames file holds it), then one bit of its frame flipped."""
    frame = (run_dir / "state" / "replay-frames.u8").read_bytes()[: 84 * 84]
    record = np.int64(0).tobytes() + frame
    record = bytearray(record + np.uint32(zlib.crc32(record)).tobytes())
    record[8 + 100] ^= 1
    with open(_journal(run_dir), "ab") as journal:
        journal.write(bytes(record))


def _frames_bit_flip(run_dir):
    path = run_dir / "state" / "replay-frames.u8"
    data = bytearray(path.read_bytes())
    data[84 * 84 * 3 + 7] ^= 1
    path.write_bytes(bytes(data))


DAMAGES = {
    "config.json is a list": (lambda d: _json(d / "config.json", lambda c: [c]), "holds a list"),
    "a string where a number belongs": (lambda d: _json(d / "config.json", lambda c: {**c, "eval_freq": "10"}),
                                        "eval_freq is '10'"),
    "a negative number": (lambda d: _json(d / "config.json", lambda c: {**c, "replay_memory_size": -5}),
                          "replay_memory_size is -5"),
    "the manifest's counter is a string": (
        lambda d: _json(d / "state" / "manifest.json", lambda m: {**m, "sequence": str(m["sequence"])}), "sequence"),
    "the manifest names a file outside": (
        lambda d: _json(d / "state" / "manifest.json", lambda m: {**m, "file": "../../best.pkl"}), "file is"),
    "the manifest lacks the progress": (
        lambda d: _json(d / "state" / "manifest.json", lambda m: {k: v for k, v in m.items() if k != "timestep"}),
        "no timestep"),
    "state is a file": (lambda d: _replace_by_file(d / "state"), "is a file where run.py keeps a folder"),
    "tensorboard is a file": (lambda d: _replace_by_file(d / "tensorboard"), "is a file where"),
    "run.log is a folder": (lambda d: _replace_by_folder(d / "run.log"), "is a folder where run.py keeps a file"),
    "best.pkl points outside": (lambda d: (d / "best.pkl").unlink() or (d / "best.pkl").symlink_to("/etc/hostname"),
                                "points outside"),
    "a journal row out of range": (_journal_row_out_of_range, "outside the ring"),
    "a journal record altered": (_journal_bit_flip, "fails its checksum"),
    "a replay frame altered": (_frames_bit_flip, "differ from their checksums"),
    "the frames file of another size": (lambda d: open(d / "state" / "replay-frames.u8", "ab").write(b"x"),
                                        "not the"),
    "config.json edited: the seed": (lambda d: _json(d / "config.json", lambda c: {**c, "seed": 4}),
                                     "says seed 4 but the saved state was trained with 3"),
    "config.json edited: the replay size": (
        lambda d: _json(d / "config.json", lambda c: {**c, "replay_memory_size": 64}), "replay_memory_size 64"),
    "the manifest is missing": (lambda d: (d / "state" / "manifest.json").unlink(), "--start_over"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_or_edited_run_folder_is_refused_with_one_line_and_left_as_it_was(finished_run, tmp_path, capsys,
                                                                                   damage):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir, symlinks=True)
    change, expected = DAMAGES[damage]
    change(run_dir)
    before = digest(run_dir)
    one_line(capsys, run_py.cli, ["--resume", str(run_dir), "--timestep_num", "40"], 2, expected)
    assert digest(run_dir) == before  # no config.json rewritten, no status 'running', nothing deleted


def test_a_refused_resume_stores_nothing_and_start_over_is_asked_for_in_so_many_words(finished_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    before = digest(run_dir)
    one_line(capsys, run_py.cli, ["--resume", str(run_dir), "--timestep_num", "20"], 2, "below the 30")
    assert digest(run_dir) == before  # the refused budget is not stored: a plain --resume still works
    run_py.cli(["--resume", str(run_dir)])
    one_line(capsys, run_py.cli, [*TINY, "--start_over"], 2, "--start_over is for --resume")
    (run_dir / "state" / "manifest.json").unlink()
    run_py.cli(["--resume", str(run_dir), "--start_over"])  # asked for: trains again from step 0
    state, manifest = load_state(str(run_dir / "state"))
    assert manifest["timestep"] == 30 and manifest["sequence"] < 10
    assert "resumed" not in capsys.readouterr().out


def test_a_live_run_folder_is_locked_and_status_json_tells_live_from_dead(finished_run, tmp_path, capsys):
    from utils.runlock import run_is_live

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    process = subprocess.Popen([sys.executable, "run.py", "--resume", str(run_dir), "--timestep_num", "100000"],
                               cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while json.load(open(run_dir / "status.json")).get("pid") != process.pid:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert run_is_live(str(run_dir))
        one_line(capsys, run_py.cli, ["--resume", str(run_dir), "--timestep_num", "100000"], 75,
                 "is in use by another process", f"pid {process.pid}")
    finally:
        process.kill()
        process.wait()
    status = json.load(open(run_dir / "status.json"))
    assert status["status"] == "running" and not run_is_live(str(run_dir))  # killed: the status is that of a dead run
    # and a resume takes the folder over (the killed run may have saved steps past the first budget: finish there)
    done = json.load(open(run_dir / "state" / "manifest.json"))["timestep"]
    run_py.cli(["--resume", str(run_dir), "--timestep_num", str(done)])
    assert json.load(open(run_dir / "status.json"))["status"] == "finished"


# -- names, outputs, sweep and bench inputs ----------------------------------------------------------------------------


def test_names_longer_than_the_file_system_allows_are_refused_at_the_option(tmp_path, capsys):
    from conversion_based_snn import convert
    from utils import export_nir

    long = "n" * 300
    one_line(capsys, run_py.cli, [*TINY, "--output_dir", str(tmp_path), "--run_name", long], 2, "--run_name",
             "shorter")
    one_line(capsys, run_py.cli, [*TINY, "--output_dir", str(tmp_path / long)], 2, "--output_dir", "shorter")
    one_line(capsys, run_py.cli, ["--method", "play", "--model_path", "x.pkl", "--output_dir", str(tmp_path / long)],
             2, "--output_dir")
    one_line(capsys, convert.cli, ["--model", "x.pkl", "--output_dir", str(tmp_path), "--run_name", long], 2,
             "--run_name")
    one_line(capsys, export_nir.cli, ["--model", "x.pkl", "--out", str(tmp_path / f"{long}.nir")], 2, "--out")
    one_line(capsys, run_py.cli, ["--resume", str(tmp_path / long)], 2, "--resume")
    assert os.listdir(tmp_path) == []


def test_export_never_overwrites_a_file_it_was_not_told_to_replace(tmp_path, capsys):
    from neural_network import save_checkpoint
    from utils import export_nir

    model = tmp_path / "best.pkl"
    save_checkpoint(paper_network("Dsqn", 4, T=2), str(model))
    weights = model.read_bytes()
    one_line(capsys, export_nir.cli, ["--model", str(model), "--out", str(model), "--overwrite"], 2,
             "is the --model file itself")
    other = tmp_path / "agent.nir"
    other.write_text("someone's file")
    one_line(capsys, export_nir.cli, ["--model", str(model), "--out", str(other)], 2, "exists", "--overwrite")
    assert model.read_bytes() == weights and other.read_text() == "someone's file"
    export_nir.cli(["--model", str(model), "--out", str(other), "--overwrite", "--check_frames", "0"])
    assert other.read_bytes()[:4] == b"\x89HDF"


def test_sweep_and_bench_inputs_are_one_line(tmp_path, capsys):
    import sweep
    from bench import run as bench

    one_line(capsys, lambda argv: run_cli(lambda: sweep.main(argv), "sweep.py"),
             ["--dry_run", "--sweep_dir", str(tmp_path / "s"), "--convert_options", "--time '5"], 2,
             "--convert_options", "No closing quotation")
    one_line(capsys, lambda argv: run_cli(lambda: sweep.main(argv), "sweep.py"),
             ["--dry_run", "--sweep_dir", str(tmp_path / "s"), "--plot_options", "--format 'pdf"], 2,
             "--plot_options")
    (tmp_path / "binary.json").write_bytes(bytes(range(256)))
    (tmp_path / "wrong.json").write_text('{"parts": {}}')
    (tmp_path / "list.json").write_text("[1, 2]")
    for name, expected in (("missing.json", "no such file"), ("binary.json", "not a report"),
                           ("wrong.json", "no 'machine'"), ("list.json", "not a report")):
        one_line(capsys, lambda argv: run_cli(lambda: bench.main(argv), "bench/run.py"),
                 ["--readme_table", str(tmp_path / name)], 2, expected)


# -- the programs as a user starts them --------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_error_after_the_emulator_started_prints_one_line_and_no_leak_report(tmp_path):
    process = subprocess.run([sys.executable, "run.py", "--model", "Dqn", "--replay_memory_size", "100000000000",
                              "--device", "cpu", "--output_dir", str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=300)
    assert process.returncode == 2 and process.stderr.count("\n") == 1, process.stderr
    assert "leaked" not in process.stderr and os.listdir(tmp_path) == []


@pytest.mark.parametrize("program", ["run.py", "conversion_based_snn/convert.py"])
def test_ctrl_c_during_the_imports_is_one_line(tmp_path, program):
    process = subprocess.Popen([sys.executable, program, "--device", "cpu", "--output_dir", str(tmp_path)],
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:  # interrupt once torch is being loaded
        with contextlib.suppress(OSError):
            if "libtorch" in open(f"/proc/{process.pid}/maps").read():
                break
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and err == f"{os.path.basename(program)}: interrupted\n", err


BAD_VALUES = ["", "-1", "nan", "x", "n" * 300, "/dev/null/x"]


def _programs():
    """(name, entry point, its parser, words that make a run stop before it trains, converts or benchmarks)."""
    import sweep
    from bench import run as bench
    from conversion_based_snn import convert
    from plotting import cli as plotting_cli
    from utils import export_nir

    return [
        ("run.py", run_py.cli, run_py.build_parser(), ["--replay_memory_size", "1", "--output_dir", "{tmp}"]),
        ("convert.py", convert.cli, convert.build_parser(), ["--model", "{tmp}/missing.pkl", "--output_dir", "{tmp}"]),
        ("export_nir.py", export_nir.cli, export_nir.build_parser(), ["--model", "{tmp}/missing.pkl"]),
        ("plot.py", lambda argv: run_cli(lambda: plotting_cli.main(argv), "plot.py"), plotting_cli.build_parser(),
         ["--runs_dir", "{tmp}/missing"]),
        ("sweep.py", lambda argv: run_cli(lambda: sweep.main(argv), "sweep.py"), None,
         ["--dry_run", "--sweep_dir", "{tmp}/sweep", "--games", "Breakout", "--seeds", "0", "--models", "Dqn"]),
        ("bench/run.py", lambda argv: run_cli(lambda: bench.main(argv), "bench/run.py"), bench.build_parser(),
         ["--original", "{tmp}/missing", "--parts", "none_such", "--output", "{tmp}/bench"]),
    ]


def _without(words: list[str], option: str) -> list[str]:
    """``words`` without ``option`` and its value (the option under test takes its place)."""
    if option not in words:
        return words
    at = words.index(option)
    takes_value = at + 1 < len(words) and not words[at + 1].startswith("--")
    return words[:at] + words[at + 1 + takes_value:]


def test_every_option_of_every_program_given_bad_values_ends_without_a_traceback(tmp_path, capsys):
    from sweeping.options import build_parser as sweep_parser

    failures, cases = [], 0
    for name, entry, parser, stop in _programs():
        parser = parser or sweep_parser()
        options = [action.option_strings[0] for action in parser._actions
                   if action.option_strings and action.option_strings[0] not in ("-h", "--help")]
        assert len(options) >= 5, name
        for option in options:
            for value in BAD_VALUES:
                argv = [word.format(tmp=tmp_path) for word in _without(stop, option)] + [option, value]
                cases += 1
                environ = dict(os.environ)  # --gpu sets CUDA_VISIBLE_DEVICES
                try:
                    entry(argv)
                    status = 0
                except SystemExit as stopped:
                    status = stopped.code
                finally:
                    os.environ.clear()
                    os.environ.update(environ)
                err = capsys.readouterr().err
                if "Traceback" in err or status not in (0, 2, 4) or (status and len(error_lines(err)) != 1):
                    failures.append((name, option, value, status, err[-300:]))
    assert cases > 300 and not failures, failures[:5]
