"""Tests for bench/: the benchmark suite of issue #5 (its --tiny run, its checks and its helpers)."""

from __future__ import annotations

import glob
import json
import math
import os
import subprocess
import sys
import time

import pytest
import torch

from bench.report import SECTION_HEADINGS, check_stats
from bench.timing import break_even_calls, interleave, ratio_stat, stat, walk_stats

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ("env", "replay", "networks", "end_to_end", "conversion", "candidates")


def run_bench(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "bench/run.py", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One --tiny benchmark run (all parts) into a temporary directory."""
    out = tmp_path_factory.mktemp("bench")
    started = time.perf_counter()
    process = run_bench(["--tiny", "--output", str(out)])
    seconds = time.perf_counter() - started
    assert process.returncode == 0, process.stderr[-4000:]
    jsons, mds = glob.glob(str(out / "*.json")), glob.glob(str(out / "*.md"))
    assert len(jsons) == 1 and len(mds) == 1, (jsons, mds)
    assert jsons[0][: -len(".json")] == mds[0][: -len(".md")]
    with open(jsons[0]) as f:
        report = json.load(f)
    with open(mds[0]) as f:
        markdown = f.read()
    return {"report": report, "markdown": markdown, "stem": os.path.basename(jsons[0])[: -len(".json")],
            "seconds": seconds, "stderr": process.stderr}


# -- the --tiny run -----------------------------------------------------------------------------------------------


def test_tiny_run_is_named_after_the_machine(tiny):
    report = tiny["report"]
    machine = report["machine"]
    for key in ("cpu", "torch_threads", "gpu", "torch", "spikingjelly"):
        assert key in machine
    stem = tiny["stem"]
    assert f"_{machine['torch_threads']}t_" in stem and "_cpu_" in stem or machine["gpu"]
    assert f"torch{machine['torch'].split('+')[0]}" in stem and f"sj{machine['spikingjelly']}" in stem
    assert "[bench" in tiny["stderr"]  # progress lines


def test_tiny_report_has_every_part_and_its_fields(tiny):
    parts = tiny["report"]["parts"]
    assert set(parts) == set(PARTS)
    for name, part in parts.items():
        assert "error" not in part, (name, part.get("error"))

    env = parts["env"]["games"]
    assert set(env) == {"BreakoutNoFrameskip-v4", "PongNoFrameskip-v4"}
    for game in env.values():
        assert game["steps_per_s"]["median"] > 0 and game["us_per_step"]["median"] > 0
    assert "ratio" in parts["env"]

    replay = parts["replay"]
    assert 7000 < replay["default_layout"]["bytes_per_transition"] < 7500  # frames stored once, 2 % headroom
    assert set(replay["append_us"]) == {"check_continuity", "no_check"}
    for key in ("sample_us", "append_ratio", "measured_bytes_per_transition"):
        assert key in replay

    networks = parts["networks"]
    assert networks["backends"] == ["torch"]  # the CPU has one neuron kernel
    cases = {e["case"] for e in networks["results"]}
    assert {"Dqn", "Dsqn_T2"} <= cases
    for entry in networks["results"]:
        for key in ("forward_ms", "act_ms", "update_ms", "act_overhead"):
            assert key in entry, (entry["case"], key)
    assert networks["ratios"]

    e2e = parts["end_to_end"]
    assert {"Dqn", "Dsqn_T2"} <= set(e2e["runs"])
    for case in ("Dqn", "Dsqn_T2"):
        assert e2e["runs"][case]["steps_per_s"]["median"] > 0
        limit = e2e["limits"][case]
        assert limit["network_bound_steps_per_s"] >= limit["sum_of_parts_steps_per_s"] > 0

    conversion = parts["conversion"]
    assert set(conversion["ms_per_action"]) == {"layer_by_layer", "step_by_step"}
    assert conversion["check_grid_weights"]["bit_identical"]
    assert conversion["check_float32_weights"]["same_action"]

    candidates = parts["candidates"]
    assert "hot_loop" in candidates and "summary" in candidates
    assert {"tqdm_update", "add_scalar_with_item", "epsilon_and_rng"} <= set(candidates["hot_loop"]["per_call_us"])
    if tiny["report"]["machine"]["torch_threads"] > 1:
        assert candidates["threads"]["act"]
    if sys.platform.startswith("linux"):
        assert {e["case"] for e in candidates["malloc"]["update"]} == cases
        assert candidates["malloc"]["learn"]["tuned_steps_per_s"]["median"] > 0

    assert tiny["report"]["paper_run"]["rows"]
    assert tiny["report"]["stat_problems"] == []


def test_tiny_report_medians_lie_between_min_and_max(tiny):
    stats = list(walk_stats(tiny["report"]))
    assert len(stats) > 30
    for path, s in stats:
        assert s["min"] <= s["median"] <= s["max"], (path, s)
        assert all(math.isfinite(s[k]) for k in ("median", "min", "max")), (path, s)
        assert s["n"] >= 1 and s["unit"]
    assert check_stats(tiny["report"]) == []


def test_tiny_markdown_has_the_section_headings(tiny):
    markdown = tiny["markdown"]
    assert markdown.startswith("# Benchmark: ")
    for heading in SECTION_HEADINGS.values():
        assert f"\n{heading}\n" in markdown, heading
    assert "median" in markdown and "interleaved" in markdown


# -- checks the benchmark relies on ---------------------------------------------------------------------------------


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_layer_by_layer_and_step_by_step_conversion_agree(one_thread):
    from bench.conversion import build_snn, compare_simulations, on_grid

    snn, x = build_snn(seed=0)
    grid = compare_simulations(on_grid(snn), x, T=30)
    assert grid["identical_spike_trains"] and grid["identical_final_voltages"], grid
    assert 0.01 < grid["firing_rate"] < 0.9  # meaningless if the network were silent or saturated
    raw = compare_simulations(snn, x, T=30)
    assert raw["differing_spikes"] <= 0.001 * raw["spike_slots"] and raw["same_action"], raw


@pytest.mark.parametrize("model,T", [("Dqn", None), ("Dsqn", 2)])
def test_compiled_network_gives_the_eager_outputs(model, T, one_thread):
    """The torch.compile candidate: same Q-values (act, batch 1, no grad) and the same training forward (batch 32,
    with grad) as the eager network, within COMPILE_ATOL / COMPILE_RTOL (float32)."""
    from bench.candidates import COMPILE_ATOL, COMPILE_RTOL
    from bench.networks import compile_network
    from neural_network import build_network

    torch.manual_seed(0)
    eager = build_network(model, 4, T=T or 64)
    compiled = build_network(model, 4, T=T or 64)
    compiled.load_state_dict(eager.state_dict())
    compile_network(compiled)
    g = torch.Generator().manual_seed(1)
    one = torch.randint(0, 256, (1, 4, 84, 84), dtype=torch.uint8, generator=g)
    batch = torch.randint(0, 256, (32, 4, 84, 84), dtype=torch.uint8, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(compiled(one), eager(one), atol=COMPILE_ATOL[model], rtol=COMPILE_RTOL)
    q_compiled, q_eager = compiled(batch), eager(batch)
    torch.testing.assert_close(q_compiled, q_eager, atol=COMPILE_ATOL[model], rtol=COMPILE_RTOL)
    q_compiled.sum().backward()
    q_eager.sum().backward()
    for (name, p), q in zip(compiled.named_parameters(), eager.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=COMPILE_ATOL[model], rtol=1e-3, msg=name)


# -- options and helpers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args,message", [
    (["--parts", "env,gpu"], "unknown part"),
    (["--T", "8,x"], "--T"),
    (["--repeats", "0"], "--repeats"),
    (["--e2e_dqn_steps", "7"], "multiple of 4"),
    (["--compile", "Resnet"], "--compile"),
    (["--games", "Tetris"], "--games"),
    (["--device", "tpu"], "--device"),
    (["--e2e_threads", "two"], "--e2e_threads"),
    (["--tag", "a/b"], "--tag"),
])
def test_bad_options_are_one_line_and_exit_2(args, message, tmp_path):
    process = run_bench([*args, "--output", str(tmp_path)], timeout=120)
    assert process.returncode == 2, process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench/run.py: error:") and message in lines[0], lines
    assert not os.listdir(tmp_path)


def test_interleave_rotates_and_pairs_rounds():
    calls = []
    samples = interleave({name: (lambda n=name: calls.append(n)) for name in "ABC"}, repeats=3, warmup=1)
    assert calls == list("ABC") + list("ABC") + list("BCA") + list("CAB")
    assert all(len(v) == 3 for v in samples.values())
    with pytest.raises(ValueError):
        ratio_stat([1.0, 2.0], [1.0])
    r = ratio_stat([2.0, 6.0, 3.0], [1.0, 2.0, 3.0])
    assert (r["median"], r["min"], r["max"]) == (2.0, 1.0, 3.0)
    s = stat([0.001, 0.003, 0.002], "ms", 1e3)
    assert s["median"] == pytest.approx(2.0) and s["min"] == pytest.approx(1.0) and s["max"] == pytest.approx(3.0)


def test_break_even_calls():
    assert break_even_calls(first_call_s=10.0, eager_s=0.002, compiled_s=0.001) == pytest.approx(9998.0)
    assert break_even_calls(first_call_s=10.0, eager_s=0.001, compiled_s=0.002) is None
