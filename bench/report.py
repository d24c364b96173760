"""The markdown report of a benchmark run (the JSON file holds the same figures and more), and the README's
performance table, rendered from a report's JSON (tests/test_bench.py checks that README.md holds exactly that)."""

from __future__ import annotations

import math

SECTIONS = {"env": "## Environment steps", "replay": "## Replay memory", "networks": "## Networks: act and update",
            "end_to_end": "## End to end: learning steps per second",
            "evaluation": "## Evaluation: the games one after the other and at once",
            "concurrent": "## Several training runs on one device", "conversion": "## Conversion baseline",
            "bf16": "## bf16 against float32"}


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if x == 0 or abs(x) >= 10 ** digits:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}" if abs(x) >= 1e-3 else f"{x:.2e}"


def fs(s: dict | None) -> str:
    """'median (min–max)' of a statistic."""
    return "" if s is None else f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})"


def fx(s: dict | None) -> str:
    return "" if s is None else f"{fs(s)}×"


def table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]


def threads(machine: dict) -> str:
    return f"{machine['torch_threads']} torch thread" + ("s" if machine["torch_threads"] != 1 else "")


def percent(x: float) -> str:
    return f"{100 * x:.0f} %"


def render(report: dict) -> str:
    m, parts = report["machine"], report["parts"]
    lines = [f"# Benchmark: {m['cpu']}, {threads(m)}, {m['gpu'] or 'no GPU'}", "",
             (f"Written by `{report['command'].strip()}` on {report['started']}; the run took "
              f"{report['total_s'] / 60:.1f} min. Load average (1, 5, 15 min) at the start "
              f"{m['load_average_at_start']}, at the end {m['load_average_at_end']}: other work shares this machine's "
              f"{m['logical_cpus']} CPUs, so read the ratios first."),
             ("Figures: median (min–max) over repeats. Ratios: median (min–max) of per-round ratios of variants timed "
              "in the same rounds, interleaved (A, B, A, B, ...; the order rotates each round)."), "", "## Machine", ""]
    lines += table(["what", "value"], [[k, v] for k, v in m.items()])
    lines += [f"Settings: `{report['settings']}`", ""]
    for name, heading in SECTIONS.items():
        part = parts.get(name)
        if part is None:
            continue
        lines += [heading, ""]
        if "error" in part or "skipped" in part:
            lines += ["**Not measured:**", "", "```", (part.get("error") or part["skipped"]).strip(), "```", ""]
            continue
        lines += RENDERERS[name](part)
        lines += [f"Errors: `{part['errors']}`", ""] if part.get("errors") else []
    return "\n".join(lines).rstrip() + "\n"


def render_env(part):
    rows = [[g, fs(v["steps_per_s"]), fs(v["us_per_step"])] for g, v in part["games"].items()]
    lines = ["The training env (the full DeepMind pipeline, 4 frames per agent step), random actions, resets included.",
             ""]
    lines += table(["game", "agent steps/s", "µs per step"], rows)
    return lines + ([f"Ratio {part['ratio']['what']}: {fx(part['ratio']['value'])}", ""] if "ratio" in part else [])


def render_replay(part):
    return [(f"1,000,000 transitions take **{part['paper_capacity_bytes_per_transition']:,.0f} bytes each**, "
             f"{part['paper_capacity_gb']:.2f} GB in all (frames stored once; whole state and next-state stacks "
             f"would take {part['whole_stack_bytes_per_transition']:,}). Measured on a full memory of "
             f"{part['measured_capacity']:,}: {part['measured_bytes_per_transition']:,.0f} bytes per transition."), "",
            *table(["operation", "µs per call"], [["append (continuity check on, the default)", fs(part["append_us"])],
                                                  [f"sample({part['sample_batch_size']}) to tensors",
                                                   fs(part["sample_us"])]])]


def render_networks(part):
    lines = [f"Device {part['device']}; neuron kernels: {', '.join(part['backends'])}"
             + (f" (not usable here: {', '.join(part['skipped_backends'])})" if part["skipped_backends"] else "")
             + f". Speed-up: against {part['base']}, per-round ratio of times. "
             "`act`: Agent.act at epsilon 0 (batch 1); "
             "`update`: Agent.update on 32 Breakout transitions. First calls (compile with an empty Inductor cache, "
             "capture) are timed apart; "
             "break-even: updates after which the first call has paid for itself. ΔQ: the largest |Q| difference "
             "to the base on the same frame before any update.", ""]
    rows = [[r["variant"], fs(r["act_ms"]), fx(r.get("act_speedup")), fs(r["update_ms"]), fx(r.get("update_speedup")),
             f"{r['first_act_s']:.2f} / {r['first_update_s']:.2f}",
             fmt(r.get("break_even_updates")) if "break_even_updates" in r else "",
             fmt(r["q_max_abs_diff_vs_base"]) if "q_max_abs_diff_vs_base" in r else ""] for r in part["rows"]]
    lines += table(["variant", "act ms", "act speed-up", "update ms", "update speed-up", "first act / update s",
                    "break-even updates", "ΔQ"], rows)
    return lines + table(["ratio", "value"], [[r["what"], fx(r["value"])] for r in part["ratios"]])


def render_end_to_end(part):
    lines = [(f"The real training loop (agent.Trainer) on {part['game']} after {part['replay_start_size']} "
              f"exploration steps, replay of {part['replay_capacity']:,}, epsilon held at {part['epsilon']} (its value "
              "for 98 % of a paper run), TensorBoard and tqdm on; 50M-step run: 50,000,000 learning steps at the "
              "median rate, evaluations (30 games every 250,000 steps) not included."), ""]
    rows = [[name, fs(r["steps_per_s"]), fs(r["ms_per_step"]), f"{r['paper_run_days']:,.1f} days"]
            for name, r in part["runs"].items()]
    lines += table(["run", "learning steps/s", "ms per step", "50M-step run"], rows)
    lines += table(["ratio", "value"], [[r["what"], fx(r["value"])] for r in part["ratios"]]) if part["ratios"] else []
    if part.get("original"):
        o = part["original"]
        lines += [f"`original`: the authors' code ({part['original_checkout']}) in its own virtualenv "
                  f"(bench/original.py): {o['backend']} neurons on {o['device']}, versions {o['versions']}"
                  + ("; the CuPy backend it hard-codes needs CUDA, so SpikingJelly's torch backend stood in for it"
                     if o["backend"] != "cupy" else "") + ".", ""]
    lines += render_breakdown(part.get("breakdown", []))
    return lines + ([f"Original not timed: {part['original_error']}", ""] if part.get("original_error") else [])


def render_breakdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    stages = list(rows[0]["stages_ms"])
    lines = [("A learning step taken apart (run.py's default options; each stage closed by a device sync, so that "
              "its GPU work is charged to it: the stages may sum to more than the unsynchronised step), ms per "
              "learning step:"), ""]
    body = [[r["run"], fmt(r["ms_per_step"]), *(fmt(r["stages_ms"][k]) for k in stages), fmt(r["rest_ms"]),
             f"**{r['largest']}**"] for r in rows]
    return lines + table(["run", "step (unsynchronised)", *stages, "rest of the loop", "largest"], body)


def render_evaluation(part):
    lines = [(f"One evaluation of {part['games']} Breakout games of {part['model']} T={part['T']} (untrained) at "
              f"epsilon {part['epsilon']}, cut at {part['max_episode_step']:,} steps: one after the other on one env "
              f"(batch 1) against all at once ({part['slots']} env slots, {part['workers']} worker processes, one "
              f"batched forward pass per step). The same seeds give the same games both ways: "
              f"{', '.join(f'{n:,}' for n in part['agent_steps_per_evaluation'])} agent steps per evaluation."), ""]
    rows = [[name, fs(part["evaluation_seconds"][name]), fs(part["agent_steps_per_s"][name])]
            for name in part["evaluation_seconds"]]
    lines += table(["games", "seconds per evaluation", "agent steps/s"], rows)
    lines += [f"Speed-up at once / one after the other: {fx(part['speedup'])}", ""]
    p = part["paper"]
    lines += [(f"A paper run has {p['evaluations']} evaluations of 30 games; at most (every game reaching the "
               f"18,000-step cap) {p['agent_steps_per_evaluation_at_most']:,} agent steps each, at the rates above: "
               + "; ".join(f"{name} {fmt(h)} h" for name, h in p["evaluation_hours_at_most"].items()) + ".")]
    if "run_hours_at_most" in p:
        lines += [(f"With its 50M learning steps at {fmt(p['learning_rate'])} steps/s ({fmt(p['training_hours'])} "
                   "h, part end_to_end), a whole paper run takes at most: "
                   + "; ".join(f"evaluations {name}: {fmt(h)} h ({fmt(h / 24)} days)"
                               for name, h in p["run_hours_at_most"].items()) + ".")]
    return lines + [""]


def render_concurrent(part):
    lines = [(f"k training runs at once ({part['run']}, run.py's default options, {part['learning_steps']} "
              f"learning steps each, {part['threads_per_run']} torch thread each), each its own process. "
              "Aggregate: the sum of the runs' rates (read it with the share of the span in which all k ran), and "
              "all their steps over the whole span."), ""]
    rows = []
    for k, r in part["k"].items():
        if "error" in r:
            rows.append([k, r["error"], "", "", "", ""])
        else:
            scaling = f"{fmt(r['scaling'])}×" if r.get("scaling") else ""
            rows.append([k, fs(r["per_run_steps_per_s"]), fmt(r["sum_of_rates"]), scaling,
                         fmt(r["aggregate_steps_per_s"]), percent(r["overlap_fraction"])])
    return lines + table(["k", "steps/s per run", "sum of rates", "× one run", "steps / span", "all k running"],
                         rows)


def render_conversion(part):
    lines = [f"{part['network']}, converted ({part['node_type']}), one Breakout frame stack, T = {part['T']}.", ""]
    lines += table(["simulation", "ms per action"], [[k.replace("_", " "), fs(v)]
                                                     for k, v in part["ms_per_action"].items()])
    lines += [f"Ratio {part['speedup']['what']}: {fx(part['speedup']['value'])}", "",
              (f"Greedy agreement with the ANN (conversion_based_snn.snn.greedy_agreement) on "
               f"{part['agreement_frames']} Breakout frame stacks (the ANN's greedy actions on them, by action: "
               f"{part['ann_greedy_actions']}), by T:"), ""]
    schedules = list(part["agreement"])
    Ts = list(part["agreement"][schedules[0]])
    return lines + table(["T", *schedules], [[T, *(percent(part["agreement"][s][T]) for s in schedules)] for T in Ts])


def render_bf16(part):
    lines = [(f"{part['network']}: --bf16 (autocast through the Agent) against float32 on {part['frames']} "
              "Breakout frame stacks: greedy action agreement, largest |ΔQ|, and per neuron layer the spikes in all "
              "and the share of neurons with the same spike count."), ""]
    rows = []
    for T, r in part["T"].items():
        layers = "; ".join(
            f"{n} {fmt(v['spikes_fp32'])} → {fmt(v['spikes_bf16'])} ({percent(v['same_count_fraction'])})"
            for n, v in r["layers"].items())
        rows.append([T, percent(r["greedy_agreement"]), f"{fmt(r['q_max_abs_diff'])} of {fmt(r['q_max_abs'])}", layers])
    return lines + table(["T", "same greedy action", "max |ΔQ| (of max |Q|)", "spikes fp32 → bf16 (same count)"], rows)


RENDERERS = {"env": render_env, "replay": render_replay, "networks": render_networks,
             "end_to_end": render_end_to_end, "evaluation": render_evaluation, "concurrent": render_concurrent,
             "conversion": render_conversion, "bf16": render_bf16}


# -- the README's table ---------------------------------------------------------------------------------------------


def readme_table(report: dict, path: str) -> str:
    """The README's "## Performance" table: the key figures of a report (every one read from its JSON)."""
    p, m = report["parts"], report["machine"]
    rows = [["machine", (f"{m['cpu']}, {threads(m)}, {m['gpu'] or 'no GPU'}, torch "
                         f"{m['torch']}, SpikingJelly {m['spikingjelly']} ([report]({path[:-5]}.md))")]]
    if "games" in p.get("env", {}):
        rows.append(["training env (random actions)", ", ".join(f"{g} {fmt(v['steps_per_s']['median'])} agent steps/s"
                                                                 for g, v in p["env"]["games"].items())])
    if "append_us" in p.get("replay", {}):
        r = p["replay"]
        rows.append(["replay memory", (f"{r['paper_capacity_bytes_per_transition']:,.0f} bytes per transition; "
                                       f"append {fmt(r['append_us']['median'])} µs, sample(32) "
                                       f"{fmt(r['sample_us']['median'])} µs")])
    net_rows = {row["variant"]: row for row in p.get("networks", {}).get("rows", [])}
    for what in ("act", "update"):
        cells = [f"{row['case']} {row['mode']}{' bf16' if row['bf16'] else ''}: {fmt(row[f'{what}_ms']['median'])} ms"
                 + (f" ({fmt(row[f'{what}_speedup']['median'])}×)" if f"{what}_speedup" in row else "")
                 for row in net_rows.values() if row["backend"] in ("n/a", p["networks"]["backends"][0])]
        if cells:
            rows.append([f"{what} ({'batch 1' if what == 'act' else 'batch 32'}; × = speed-up over eager float32)",
                         "; ".join(cells)])
    e2e = p.get("end_to_end", {}).get("runs", {})
    if e2e:
        rows.append(["learning loop, Breakout, ε 0.1: steps/s (50M-step run)",
                     "; ".join(f"{k} {fmt(v['steps_per_s']['median'])} ({v['paper_run_days']:,.1f} days)"
                               for k, v in e2e.items())])
    if "agreement" in p.get("conversion", {}):
        c = p["conversion"]
        rows.append([f"conversion SNN, T={c['T']}", f"{fmt(c['ms_per_action']['layer_by_layer']['median'])} ms per "
                     f"action layer by layer ({fmt(c['speedup']['value']['median'])}× faster than step by step); "
                     "greedy agreement with the ANN at T " + ", ".join(
                         f"{T}: " + " / ".join(percent(c["agreement"][s][T]) for s in c["agreement"])
                         for T in c["agreement"]["delayed"]) + " (" + " / ".join(c["agreement"]) + ")"])
    if "T" in p.get("bf16", {}):
        def spike_ratio(r):
            layers = r["layers"].values()
            return sum(v["spikes_bf16"] for v in layers) / max(1.0, sum(v["spikes_fp32"] for v in layers))

        rows.append(["--bf16 against float32 (Dsqn)", "; ".join(
            f"T={T}: same greedy action {percent(r['greedy_agreement'])}, spikes {percent(spike_ratio(r))} of "
            "float32's" for T, r in p["bf16"]["T"].items())])
    return "\n".join(table(["stage", "figure (median)"], rows)).rstrip()
