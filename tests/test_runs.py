"""utils.runs.RunFolder, the one reader of a run folder's files, on the folder of a real run.py learn run and on
damaged copies of it."""

from __future__ import annotations

import csv
import json
import os
import shutil

import pytest
from conftest import read_scalars

from utils.files import sha256_of
from utils.runs import RunFolder, evaluation_row, trained_checkpoint


def test_run_folder_reads_what_a_learn_run_wrote(trained_run):
    from agent.persistence import read_manifest

    run_dir = trained_run("Dqn").run_dir
    folder = RunFolder(run_dir)
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as file:
        assert folder.config == json.load(file)
    assert folder.name == os.path.basename(run_dir) and folder.config["run_name"] == folder.name
    assert folder.config["program"] == "run.py" and folder.config["model"] == "Dqn"
    assert folder.config_of("run.py") == folder.config and folder.config_of("convert.py") == {}
    assert folder.status["status"] == "finished" and folder.status["timestep"] == 40
    assert folder.summary is None  # a learn run writes none
    assert folder.progress["phase"] == "finished" and folder.progress["step"] == folder.progress["total"] == 40

    with open(os.path.join(run_dir, "evaluations.csv"), encoding="utf-8", newline="") as file:
        assert folder.evaluations == list(csv.DictReader(file))
    events = read_scalars(os.path.join(run_dir, "tensorboard"))["evaluate/average_score"]
    assert [int(row["step"]) for row in folder.evaluations] == [step for step, _ in events] == [0, 20, 40]
    assert [float(row["mean"]) for row in folder.evaluations] == pytest.approx([value for _, value in events])

    manifest = folder.manifest
    assert manifest == read_manifest(os.path.join(run_dir, "state"))  # the same file persistence checks
    assert manifest["timestep"] == 40 and manifest["finished"] is True
    assert sha256_of(os.path.join(run_dir, "state", manifest["file"])) == manifest["sha256"]

    assert trained_checkpoint(run_dir) == (os.path.join(run_dir, "best.pkl"), folder.config)


def test_run_folder_gives_none_for_a_missing_or_damaged_file_and_writes_atomically(trained_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trained_run("Dqn").run_dir, copy)
    folder = RunFolder(str(copy))
    (copy / "config.json").write_text('{"program": "run.py", "mod')  # cut off
    (copy / "status.json").write_text("[1, 2]")  # JSON, but not an object
    (copy / "progress.json").unlink()
    (copy / "evaluations.csv").write_bytes(b"\xff\xfe not text")
    assert folder.exists("config.json") and not folder.exists("progress.json")
    assert (folder.config, folder.status, folder.progress, folder.summary) == (None, None, None, None)
    assert folder.config_of("run.py") == {} and folder.evaluations == []
    with pytest.raises(ValueError):
        folder.load("config.json")  # the strict reader tells a damaged file from a missing one
    with pytest.raises(FileNotFoundError):
        folder.load("progress.json")
    assert folder.load("status.json") == [1, 2]

    folder.write_status("stopped", timestep=20, signal="SIGTERM")
    status = folder.status
    assert (status["status"], status["timestep"], status["signal"], status["pid"]) == ("stopped", 20, "SIGTERM",
                                                                                         os.getpid())
    folder.write_summary({"scores": [1.0, None], "average_score": float("nan")})
    assert folder.summary == {"scores": [1.0, None], "average_score": None}  # strict JSON: NaN is null
    folder.write_evaluation(evaluation_row(0, [1.0, 3.0], 0.5, 0))
    folder.write_evaluation(evaluation_row(10, [2.0], 0.25, 1))
    folder.write_evaluation(evaluation_row(10, [4.0], 0.75, 0))  # a resumed run evaluates step 10 again
    assert [(row["step"], row["mean"], row["truncated_games"]) for row in folder.evaluations] == [
        ("0", "2.0", "0"), ("10", "4.0", "0")]
    assert not [name for name in os.listdir(copy) if name.endswith(".tmp")]
