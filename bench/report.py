"""The markdown report of a benchmark run (the JSON file holds the same figures and more)."""

from __future__ import annotations

import math

from .timing import is_stat

SECTION_HEADINGS = {
    "machine": "## Machine",
    "env": "## Environment steps",
    "replay": "## Replay memory",
    "networks": "## Networks: act and update",
    "end_to_end": "## End to end: learning steps per second",
    "conversion": "## Conversion baseline: simulation at T steps",
    "candidates": "## Speed candidates",
    "paper_run": "## What a full paper run costs at these rates",
}


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if x == 0:
        return "0"
    magnitude = abs(x)
    if magnitude >= 10 ** digits:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}" if magnitude >= 1e-3 else f"{x:.2e}"


def fs(s: dict | None, unit: bool = False) -> str:
    """'median (min-max)' of a statistic."""
    if s is None:
        return "n/a"
    text = f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})"
    return f"{text} {s['unit']}" if unit else text


def ratio(entry: dict | None) -> str:
    return "n/a" if entry is None else f"{fs(entry['value'])}×"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def render(report: dict) -> str:
    m = report["machine"]
    parts = report["parts"]
    lines = [
        f"# Benchmark: {m['cpu']}, {m['torch_threads']} torch threads, {m['gpu'] or 'no GPU'}",
        "",
        f"Written by `{report['command']}` on {report['started']}; the run took {duration(report['total_s'])}.",
        "Every figure is the median over repeats with (min–max). Every ratio is the median (min–max) of per-round",
        "ratios of two variants timed in the same rounds, interleaved (A, B, A, B, ...; the order rotates each round).",
        "The machine may be shared with other work: compare ratios rather than absolute figures across reports.",
        "",
        SECTION_HEADINGS["machine"],
        "",
    ]
    lines += table(["what", "value"], [[k, v] for k, v in m.items()])
    lines += [f"Settings: `{report['settings']}`", ""]

    for name in ("env", "replay", "networks", "end_to_end", "conversion", "candidates"):
        if name not in parts:
            continue
        lines += [SECTION_HEADINGS[name], ""]
        part = parts[name]
        if "error" in part:
            lines += ["**This part failed:**", "", "```", part["error"], "```", ""]
            continue
        lines += RENDERERS[name](part, report)
    if "paper_run" in report:
        lines += [SECTION_HEADINGS["paper_run"], ""] + render_paper_run(report["paper_run"])
    return "\n".join(lines).rstrip() + "\n"


def render_env(part, report):
    rows = [[g.replace("NoFrameskip-v4", ""), fs(v["steps_per_s"]), fs(v["us_per_step"])]
            for g, v in part["games"].items()]
    lines = ["Wrapped training env (the full DeepMind pipeline, 4 frames per agent step), random actions, resets",
             f"included; {part['steps_per_sample']} steps per sample.", ""]
    lines += table(["game", "agent steps/s", "µs per step"], rows)
    if "ratio" in part:
        lines += [f"Ratio {part['ratio']['what']}: {ratio(part['ratio'])}", ""]
    return lines


def render_replay(part, report):
    d = part["default_layout"]
    return [
        f"Default layout (1,000,000 transitions, frames stored once, 2 % headroom): "
        f"**{d['bytes_per_transition']:,.0f} bytes per transition**, {d['total_gb']:.2f} GB in all "
        f"(whole state + next-state stacks would take {d['whole_stack_bytes_per_transition']:,} bytes).",
        f"Measured on a memory of {part['measured_capacity']:,} transitions: "
        f"{part['measured_bytes_per_transition']:,.0f} bytes per transition.",
        "",
        *table(["operation", "µs per call"], [
            ["append (continuity check on, the default)", fs(part["append_us"]["check_continuity"])],
            ["append (check_continuity=False)", fs(part["append_us"]["no_check"])],
            [f"sample({part['sample_batch_size']}) to tensors", fs(part["sample_us"])],
        ]),
        f"Ratio {part['append_ratio']['what']}: {ratio(part['append_ratio'])}",
        "",
    ]


def render_networks(part, report):
    lines = [f"Device {part['device']}; usable neuron backends: {', '.join(part['backends'])}"
             + (f"; skipped: {part['skipped_backends']}" if part["skipped_backends"] else "")
             + (" (each network and backend in its own worker process)" if part["isolated_workers"] else "") + ".",
             "`forward`: the bare network on one frame stack (no grad); `act`: Agent.act at epsilon 0 from a numpy",
             "frame stack (what a greedy training step pays); `update`: Agent.update on a minibatch of "
             f"{part['batch_size']} (target forward, online forward + backward, Adam step; sampling excluded).",
             ""]
    rows = [[e["case"], e["backend"], fs(e["forward_ms"]), fs(e["act_ms"]), fs(e["update_ms"]), ratio(e["act_overhead"])]
            for e in part["results"]]
    lines += table(["network", "backend", "forward ms", "act ms", "update ms", "act / forward"], rows)
    lines += table(["ratio", "value"], [[r["what"], ratio(r)] for r in part["ratios"]])
    return lines


def render_end_to_end(part, report):
    lines = [f"Agent.learn on {part['game']} after a {part['replay_start_size']}-step exploration phase, replay of "
             f"{part['replay_capacity']:,}, epsilon held at {part['epsilon']} (its value for 98 % of a paper run), "
             f"TensorBoard and tqdm on, evaluation off; torch's default is {part['default_threads']} threads "
             "(`@1t`: the same run with 1 thread).", ""]
    rows = []
    for key, run in part["runs"].items():
        lim = part.get("limits", {}).get(key)
        rows.append([
            key, run["threads"], run["learning_steps_per_run"], fs(run["steps_per_s"]), fs(run["ms_per_step"]),
            fmt(lim["network_bound_steps_per_s"]) if lim else "",
            f"{100 * run['steps_per_s']['median'] / lim['network_bound_steps_per_s']:.0f} %" if lim else "",
            fmt(lim["sum_of_parts_steps_per_s"]) if lim else "",
            f"{100 * run['steps_per_s']['median'] / lim['sum_of_parts_steps_per_s']:.0f} %" if lim else "",
        ])
    lines += table(["run", "threads", "steps per run", "learning steps/s", "ms per step", "network-bound limit",
                    "% of it", "sum-of-parts limit", "% of it"], rows)
    if part.get("ratios"):
        lines += table(["ratio", "value"], [[r["what"], ratio(r)] for r in part["ratios"]])
    lines += [
        "Limits (default threads), from the medians of the parts above (ε = 0.1, one update every 4 steps):",
        "",
        "* network-bound: t = (1 − ε)·act + update / 4 — the loop did nothing but act greedily and update;",
        "* sum of parts: t = env step + replay append + (1 − ε)·act + (sample(32) + update) / 4;",
        "",
        "limit = 1 / t. The gap between the sum-of-parts limit and the measured rate is the loop's own overhead",
        "(tqdm, TensorBoard, epsilon, Python) plus the timing noise of a shared machine.",
        "",
    ]
    if "limits_missing" in part:
        lines += [part["limits_missing"], ""]
    for case, lim in part.get("limits", {}).items():
        i = lim["inputs"]
        lines.append(f"* {case}: act {fmt(i['act_ms'])} ms, update {fmt(i['update_ms'])} ms, env {fmt(i['env_us'])} µs, "
                     f"append {fmt(i['append_us'])} µs, sample {fmt(i['sample_us'])} µs")
    return lines + [""]


def render_conversion(part, report):
    c, g = part["check_float32_weights"], part["check_grid_weights"]
    lines = [f"Converted Dqn ({part['node_type']}), one frame stack, T = {part['T']}.", ""]
    lines += table(["simulation", "ms per action"], [[k.replace("_", " "), fs(v)] for k, v in
                                                     part["ms_per_action"].items()])
    lines += [
        f"Ratio {part['speedup']['what']}: {ratio(part['speedup'])}",
        "",
        "Same spikes? (both simulations run again with every spike recorded)",
        "",
        *table(["weights", "identical spike trains", "differing spikes", "spikes / slots", "max |ΔV| at the end",
                "same greedy action"], [
            ["float32 as benchmarked", "yes" if c["identical_spike_trains"] else "no", c["differing_spikes"],
             f"{c['spikes']:,} / {c['spike_slots']:,}", fmt(c["max_final_voltage_diff"]), c["same_action"]],
            [f"on a {g['grid']} grid (exact sums)", "yes" if g["identical_spike_trains"] else "no",
             g["differing_spikes"], f"{g['spikes']:,} / {g['spike_slots']:,}", fmt(g["max_final_voltage_diff"]),
             g["same_action"]],
        ]),
        f"Grid check bit-identical (spike trains and voltages): **{'yes' if g['bit_identical'] else 'NO'}**.",
        "",
    ]
    return lines


def render_candidates(part, report):
    lines = []
    if "compile" in part:
        comp = part["compile"]
        if "error" in comp:
            lines += ["torch.compile failed:", "", "```", comp["error"], "```", ""]
        else:
            lines += [f"### torch.compile ({comp['cache']})", ""]
            rows, checks = [], []
            for c in comp["cases"]:
                if "error" in c:
                    rows.append([c["case"], "error", "", "", "", "", ""])
                    checks.append(f"* {c['case']}: failed: `{c['error'].strip().splitlines()[-1]}`")
                    continue
                for what in ("act", "update"):
                    w = c[what]
                    be = w["break_even_calls"]
                    rows.append([c["case"], what, fmt(w["compile_s"]), fs(w["eager_ms"]), fs(w["compiled_ms"]),
                                 ratio(w["speedup"]), "never" if be is None else f"{be:,.0f}"])
                a, u = c["act_check"], c["update_check"]
                checks.append(f"* {c['case']}: act Q max |Δ| {fmt(a['max_abs_diff'])} "
                              f"({'ok' if a['equal_within_tolerance'] else 'NOT'} within atol {a['atol']}, "
                              f"rtol {a['rtol']}); first-update loss |Δ| {fmt(u['max_abs_diff'])}, "
                              f"parameters after it max |Δ| {fmt(u['max_param_diff_after_one_update'])}")
            lines += table(["network", "path", "compile s (first call)", "eager ms", "compiled ms",
                            "speed-up", "break-even calls"], rows)
            lines += ["Compiled against eager outputs:", ""] + checks + [""]
    if "malloc" in part:
        m = part["malloc"]
        lines += ["### glibc malloc: no mmap per big block, keep freed memory", ""]
        if "error" in m:
            lines += ["```", m["error"], "```", ""]
        else:
            lines += [f"Two worker processes, one as is and one tuned {m['how']}.", ""]
            lines += table(["network", "update ms as is", "update ms tuned", "speed-up"],
                           [[e["case"], fs(e["default_ms"]), fs(e["tuned_ms"]), ratio(e["speedup"])]
                            for e in m["update"]])
            if "learn" in m:
                e = m["learn"]
                lines += [f"Agent.learn ({e['case']}, {e['learning_steps_per_run']} learning steps per run, as in the "
                          f"end-to-end part, each run in the worker): as is {fs(e['default_steps_per_s'])}, tuned "
                          f"{fs(e['tuned_steps_per_s'])} learning steps/s; ratio {e['speedup']['what']}: "
                          f"{ratio(e['speedup'])}.", ""]
            if "peak_rss_mb" in m:
                lines += [f"Peak resident memory of the workers: as is {m['peak_rss_mb']['default']:,.0f} MB, "
                          f"tuned {m['peak_rss_mb']['tuned']:,.0f} MB.", ""]
    if "threads" in part:
        t = part["threads"]
        if "skipped" in t:
            lines += ["### Threads", "", t["skipped"], ""]
        else:
            d = t["default_threads"]
            lines += [f"### 1 torch thread against {d}", ""]
            rows = [[e["case"], what, fs(e["threads_1_ms"]), fs(e[f"threads_{d}_ms"]), ratio(e["ratio"])]
                    for what in ("act", "update") for e in t[what]]
            lines += table(["network", "path", "1 thread ms", f"{d} threads ms", "1 / default"], rows)
    if "hot_loop" in part:
        h = part["hot_loop"]
        lines += ["### Small costs in the hot loop of Agent.learn", ""]
        lines += table(["what", "µs per call", "how often"],
                       [[k, fs(v), h["how_often"][k]] for k, v in h["per_call_us"].items()])
        if "per_step_overhead" in h:
            lines += [h["per_step_overhead"]["text"], ""]
    if "summary" in part:
        lines += ["### Verdict", ""] + [f"* {s}" for s in part["summary"]] + [""]
    return lines


def render_paper_run(paper):
    lines = [paper["assumptions"], ""]
    rows = [[r["case"], fmt(r["steps_per_s"]), f"{r['steps']:,} / {fmt(r['steps_per_s'])} = {r['seconds']:,.0f} s",
             duration(r["seconds"])] for r in paper["rows"]]
    lines += table(["network", "learning steps/s", "arithmetic", "training loop"], rows)
    lines += [paper["evaluation"], ""]
    return lines


RENDERERS = {
    "env": render_env,
    "replay": render_replay,
    "networks": render_networks,
    "end_to_end": render_end_to_end,
    "conversion": render_conversion,
    "candidates": render_candidates,
}


def check_stats(report: dict) -> list[str]:
    """Problems with the statistics of a report (median outside [min, max], non-finite values)."""
    from .timing import walk_stats

    problems = []
    for path, s in walk_stats(report):
        if not all(math.isfinite(s[k]) for k in ("median", "min", "max")):
            problems.append(f"{path}: non-finite {s}")
        elif not s["min"] <= s["median"] <= s["max"]:
            problems.append(f"{path}: median outside [min, max]: {s}")
    return problems


__all__ = ["SECTION_HEADINGS", "render", "check_stats", "is_stat"]
