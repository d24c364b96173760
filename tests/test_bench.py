"""bench/: its --tiny run (every part, the report's fields and statistics), the README's performance table against
the committed report, the original-code harness's dry run, the options and the timing helpers."""

from __future__ import annotations

import glob
import json
import math
import os
import re
import subprocess
import sys

import pytest

from bench.report import SECTIONS, readme_table
from bench.run import PARTS
from bench.timing import check_stats, interleave, ratio_stat, stat, walk_stats

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(script: str, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"), check=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One --tiny run of every part (one torch thread: a shared 2-core machine makes two threads crawl)."""
    out = tmp_path_factory.mktemp("bench")
    process = run_script("bench/run.py", ["--tiny", "--threads", "1", "--output", str(out)])
    assert process.returncode == 0, process.stderr[-4000:]
    (json_path,) = glob.glob(str(out / "*.json"))
    with open(json_path) as f:
        report = json.load(f)
    with open(json_path[:-5] + ".md") as f:
        markdown = f.read()
    return {"report": report, "markdown": markdown, "stem": os.path.basename(json_path)[:-5],
            "stderr": process.stderr}


@pytest.mark.slow
def test_tiny_run_measures_every_part(tiny):
    from bench.machine import report_stem

    report, parts = tiny["report"], tiny["report"]["parts"]
    assert tiny["stem"] == report_stem(report["machine"]) and "_1t_cpu_torch" in tiny["stem"]
    assert set(parts) == set(PARTS) and not [p for p in parts.values() if "error" in p or p.get("errors")]
    assert set(parts["env"]["games"]) == {"Breakout", "Pong"}
    assert 7000 < parts["replay"]["paper_capacity_bytes_per_transition"] < 7500
    rows = {row["variant"]: row for row in parts["networks"]["rows"]}
    assert set(rows) == {"Dqn eager", "Dsqn_T2 torch eager", "Dsqn_T2 torch eager bf16"}
    assert rows["Dsqn_T2 torch eager bf16"]["update_speedup"]["median"] > 0
    assert parts["networks"]["ratios"] and parts["networks"]["backends"] == ["torch"]
    e2e = parts["end_to_end"]["runs"]
    assert set(e2e) == {"Dqn", "Dsqn_T2", "Dsqn_T2 bf16"} and all(r["paper_run_days"] > 0 for r in e2e.values())
    breakdown = {row["run"]: row for row in parts["end_to_end"]["breakdown"]}
    assert set(breakdown) == {"Dqn", "Dsqn_T2"}
    for row in breakdown.values():  # every stage measured, the largest named
        assert set(row["stages_ms"]) == {"env", "act", "replay sample", "update"}
        assert all(v > 0 for v in row["stages_ms"].values()) and row["largest"] == max(row["stages_ms"],
                                                                                       key=row["stages_ms"].get)
    evaluation = parts["evaluation"]  # the same games both ways, timed; the paper run with its evaluations
    assert evaluation["slots"] == 2 and evaluation["agent_steps_per_evaluation"][0] > 0
    assert set(evaluation["agent_steps_per_s"]) == {"one after the other", "at once"}
    assert evaluation["paper"]["evaluations"] == 201 and evaluation["paper"]["learning_rate"] == pytest.approx(
        e2e["Dsqn_T2"]["steps_per_s"]["median"])
    hours = evaluation["paper"]["run_hours_at_most"]["at once"]
    assert hours > evaluation["paper"]["training_hours"] > 0
    assert parts["concurrent"]["k"]["1"]["sum_of_rates"] > 0
    assert report["machine"]["neuron_kernel"] == "torch" and report["machine"]["neuron_kernel_probe"] == {"torch": None}
    conversion = parts["conversion"]
    assert set(conversion["agreement"]) == {"delayed", "same_step"}
    assert all(0 <= v <= 1 for curve in conversion["agreement"].values() for v in curve.values())
    assert set(parts["bf16"]["T"]) == {"2"}
    stats = list(walk_stats(report))
    assert len(stats) > 20 and check_stats(report) == [] and report["stat_problems"] == []
    assert all(s["min"] <= s["median"] <= s["max"] and s["n"] >= 1 for _, s in stats)
    markdown = tiny["markdown"]
    assert markdown.startswith("# Benchmark: ") and "interleaved" in markdown and "Load average" in markdown
    assert all(f"\n{heading}\n" in markdown for heading in SECTIONS.values())
    assert "[bench" in tiny["stderr"]
    assert readme_table(report, "docs/benchmarks/x.json").startswith("| stage |")


def test_bf16_agreement_on_small_sizes():
    """The benchmark's bf16 part: its scaled Dsqn fires in every layer, and bf16 stays near float32."""
    from bench.parts import bf16_agreement

    result = bf16_agreement([2], frames=4, device="cpu")["T"]["2"]
    assert 0.0 <= result["greedy_agreement"] <= 1.0 and result["q_max_abs_diff"] < result["q_max_abs"]
    for layer in result["layers"].values():
        assert layer["spikes_fp32"] > 0  # the scaled network fires, so the comparison says something
        assert 0.5 < layer["spikes_bf16"] / layer["spikes_fp32"] < 2 and layer["same_count_fraction"] > 0.5


def test_readme_performance_table_is_the_committed_reports():
    """README.md's table, under the marker naming its report, is exactly what bench/report.py renders from it."""
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme.split("\n## Performance\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"<!-- bench/run\.py --readme_table (\S+\.json) -->\n(.*?)\n\n", section, re.DOTALL)
    assert match, "README's Performance section has no generated table"
    with open(os.path.join(REPO_ROOT, match.group(1)), encoding="utf-8") as f:
        assert match.group(2) == readme_table(json.load(f), match.group(1))


def test_original_harness_dry_run_and_bad_checkout(tmp_path):
    for package in ("agent", "neural_network", "replay_memory"):
        (tmp_path / package).mkdir()
    process = run_script("bench/original.py", ["--checkout", str(tmp_path), "--dry_run", "--wheels", str(tmp_path)])
    assert process.returncode == 0, process.stderr
    assert "spikingjelly==0.0.0.0.8" in process.stdout and "--no-index --find-links" in process.stdout
    assert "original_driver.py" in process.stdout and "--backend cupy" in process.stdout
    process = run_script("bench/original.py", ["--checkout", str(tmp_path / "agent"), "--dry_run"])
    assert process.returncode == 2 and process.stderr.count("\n") == 1 and "not the original" in process.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--parts", "env,gpu"], "--parts"), (["--T", "8,x"], "--T"), (["--repeats", "0"], "--repeats"),
    (["--e2e_dqn_steps", "7"], "multiple of 4"), (["--compile_cases", "Resnet"], "--compile_cases"),
    (["--games", "Tetris"], "--games"), (["--device", "tpu"], "--device"), (["--tag", "a/b"], "--tag"),
    (["--modes", "jit"], "--modes"), (["--original", "/no/such/checkout"], "--original"),
])
def test_bad_options_are_one_line_and_exit_2(args, message, tmp_path, capsys):
    from bench.run import main
    from utils.cli import run_cli

    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main([*args, "--output", str(tmp_path)]), "bench/run.py")
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("bench/run.py: error:") and message in lines[0] and not os.listdir(tmp_path)


def test_interleave_rotates_and_ratios_pair_rounds():
    order = []
    samples = interleave({name: (lambda: sum(range(100))) for name in "ABC"}, repeats=3, min_time=0.0,
                         between=order.append)
    assert "".join(order) == "ABC" + "ABC" + "BCA" + "CAB"  # the warm-up calls, then rounds in a rotating order
    assert all(len(v) == 3 and all(t > 0 for t in v) for v in samples.values())
    with pytest.raises(ValueError):
        ratio_stat([1.0, 2.0], [1.0])
    r = ratio_stat([2.0, 6.0, 3.0], [1.0, 2.0, 3.0])
    assert (r["median"], r["min"], r["max"]) == (2.0, 1.0, 3.0)
    s = stat([0.001, 0.003, 0.002], "ms", 1e3)
    assert math.isclose(s["median"], 2.0) and math.isclose(s["min"], 1.0) and math.isclose(s["max"], 3.0)
