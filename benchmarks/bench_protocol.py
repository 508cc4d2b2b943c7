"""The evaluation protocol of issue 19, end to end: every simulator trained with several seeds on the same
dataset, its controls and ablation rows beside it, benchmarked on scenes no simulator trained on.

For each world (`procedural`; `sensor_only`: real geometry = CAD, so residuals are sensor effects only) one
dataset (seed 0's), and for each training seed one run folder with:

- Stage-I, the discriminator and its flags, Stage-II (the demo's flow, notebooks 02-04);
- the controls: Stage-I trained on for Stage-II's steps (`stage1_long`), Stage-II without re-weighting
  (`stage2_norew`), both at Stage-II's budget;
- "w/o res": Stage-I predicting the real depth (`direct`, `stage2.train_direct`);
- "w/o bin" as the paper's Sec. 4.5(3): flags from mean |Stage-I - real| > tau (no discriminator), one
  Stage-II per tau of `--taus`; tau is chosen by the matched W1 on the benchmark split (scenes no simulator
  trained on), and that Stage-II is the `wo_bin` row, scored on the val split like every other row
  (choosing tau on the scored frames would hand w/o bin the best of four draws);
- pix2pix and CycleGAN with the diffusion stages' total budget (`baselines.steps` = 2 x `train.steps`);

then `benchmark.evaluate_run` (depth, holes, binned W1, 3D, the two-sample AUC on the benchmark split, the
downstream task trained on the benchmark split). The table pools the training seeds: mean ± std over seeds
(best in bold only where the gap exceeds the spread).

    python benchmarks/bench_protocol.py --out runs/protocol --seeds 0 1 2                  # demo sizes (GPU: minutes)
    python benchmarks/bench_protocol.py --out /tmp/proto --seeds 0 1 --quick --worlds procedural   # CI sizes

Writes <out>/<world>/results.{md,json} and <out>/results.md (every world), resumable (finished steps reused).
Seeds run as separate processes (one per core; the later seeds' `data` a link to the first seed's) join with
`--summarize-only --merge OTHER_OUT ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

TAUS = (0.01, 0.02, 0.05, 0.10)  # w/o bin thresholds, metres


def run_seed(world_dir: Path, seed: int, args, shared_data: Path | None) -> tuple[list[dict], dict]:
    """One training seed: train every row, evaluate; returns (the benchmark's rows, the tau sweep)."""
    from sim2real_kit import benchmark, flagging, notebook, simulate, stage1, stage2
    from sim2real_kit.notebook import realism_metrics

    base_dir = world_dir / f"seed{seed}"
    base_dir.mkdir(parents=True, exist_ok=True)
    if shared_data is not None and not (base_dir / "data").exists():
        os.symlink(os.path.relpath(shared_data.resolve(), base_dir.resolve()), base_dir / "data")
    overrides = [f"data.world={world_dir.name}", *args.overrides]
    base, cfg = notebook.setup(base_dir, args.preset, args.quick, seed, overrides)
    if not any(o.startswith("baselines.steps=") for o in args.overrides):  # the GANs get the diffusion budget
        base, cfg = notebook.setup(base_dir, args.preset, args.quick, seed, [f"baselines.steps={2 * cfg.train.steps}"])
    progress = not args.no_progress
    stage1.train_stage1(base, cfg, progress=progress)
    for split in ("val", "train", "benchmark"):
        if base.layout(cfg).has_split(split) and not base.has_samples(1, split):
            simulate.sample_split(base, cfg, split, stage=1, progress=progress)
    if base.flags_state(1) != "ok":  # missing, or made from samples drawn since
        flagging.train_and_flag(base, cfg, stage=1, progress=progress)
    stage2.train_chain(base, cfg, 2, progress=progress)
    stage2.stage1_control(base, cfg, progress=progress, splits=("val", "benchmark"))
    norew = stage2.control_run(base, cfg, "stage2_norew", ["stage2.reweight=false"], share=("stage1", "disc"))
    stage2.train_chain(*norew, 2, progress=progress)
    stage2.train_direct(base, cfg, progress=progress)

    sweep = {}
    for tau in args.taus:
        name = f"wo_bin_{round(tau * 1000)}mm"
        folder, tcfg = stage2.control_run(
            base, cfg, name, ["disc.mode=difference", f"disc.diff_threshold_m={tau}"], share=("stage1",)
        )
        stage2.train_chain(folder, tcfg, 2, progress=progress)
        layout = folder.layout(tcfg)
        val, held = (folder.load_samples(2, split, layout) for split in ("val", "benchmark"))
        sweep[name] = {
            "tau_m": tau,
            "w1_select_mm": realism_metrics(held, 2)["w1_mm"],  # tau is chosen here: not the table's frames
            "w1_val_mm": realism_metrics(val, 2)["w1_mm"],
        }
    best = min(sweep, key=lambda n: sweep[n]["w1_select_mm"])
    wo_bin = benchmark.chain_simulator("wo_bin", base.control(best), 2, cfg)

    names = [n for n in benchmark.SIMULATORS if n not in ("stage3", "real")]
    res = benchmark.evaluate_run(
        base, cfg, simulators=[*names, wo_bin, "real"], seeds=1, progress=progress, train_baselines=True,
        fuse=not args.no_fuse,
    )  # fmt: skip
    rows = []
    for r in res.rows:
        row = {**r, "train_seed": seed}
        if row.get("seed") is not None:
            row["seed"] = seed  # one sampling seed per run: the spread is over training seeds
        if row["simulator"] == "wo_bin":
            row["note"] = "; ".join(
                x for x in (row.get("note"), f"tau {sweep[best]['tau_m']} m, chosen on the benchmark split") if x
            )
        rows.append(row)
    return rows, {"best": best, "taus": sweep, "effects": res.summary.get("effect_reproduction") or {}}


def summarize(world: str, rows: list[dict], sweeps: dict, seeds: list[int]) -> tuple[list[dict], str]:
    from sim2real_kit.benchmark import COLUMNS, DOWNSTREAM_COLUMNS, LABELS, compare_table
    from sim2real_kit.benchmark.tables import themed_markdown, unconverged

    keys = [c.key for c in (*COLUMNS, *DOWNSTREAM_COLUMNS)]
    quiet = "seed spread needs >= 2 seeds"  # one sampling seed per run, by design: not worth a note per row
    rows = [{**r, "note": "; ".join(p for p in str(r.get("note") or "").split("; ") if p and p != quiet)} for r in rows]
    table = compare_table(rows, keys)
    labels = {**LABELS, "wo_bin": "w/o bin (best tau, Stage-II)"}
    md = [
        f"### World `{world}`: seeds {seeds}, mean ± std over training seeds",
        "",
        themed_markdown(
            table,
            labels={e["simulator"]: labels.get(e["simulator"], e["simulator"]) for e in table},
            flagged=unconverged(table),
        ),  # fmt: skip
        "#### w/o bin: the threshold sweep (Stage-II, matched W1 mm per seed: benchmark split / val split)",
        "",
        "tau is chosen on the benchmark split (marked *), the table above scores that model on val.",
        "",
        "| tau (m) | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "| --- | " + " | ".join("---" for _ in seeds) + " |",
    ]
    for name in next(iter(sweeps.values()))["taus"]:
        cells = [
            f"{sweeps[s]['taus'][name]['w1_select_mm']:.2f}{'*' if sweeps[s]['best'] == name else ''} / "
            f"{sweeps[s]['taus'][name]['w1_val_mm']:.2f}"
            for s in seeds
        ]
        md.append(f"| {sweeps[seeds[0]]['taus'][name]['tau_m']} | " + " | ".join(cells) + " |")
    effects = [sweeps[s]["effects"] for s in seeds if sweeps[s].get("effects")]
    if effects:  # worlds with the sensor's ground-truth effect masks (procedural, sensor_only)
        from sim2real_kit.benchmark.two_sample import effects_markdown

        md += ["", "#### Sensor effects reproduced", "", effects_markdown(effects, labels)]
    return table, "\n".join(md) + "\n"


HEADLINE = ("w1_mm", "w1_edge0_2_mm", "hole_gap_pct", "c2st_auc")  # the headline table's columns, per world


def headline(tables: dict[str, list[dict]]) -> str:
    """One table over the worlds: per simulator the headline metrics (`HEADLINE`) of each world's pooled table
    (`compare_table` entries), mean ± std over training seeds, the best per column in bold only where its gap
    exceeds the spread; unconverged rows (in any world) marked and out of the best."""
    from sim2real_kit.benchmark import COLUMNS, LABELS, REFERENCE, markdown_table
    from sim2real_kit.benchmark.tables import Column, marked_labels, unconverged

    by_key = {c.key: c for c in COLUMNS}
    merged: dict[str, dict] = {}
    columns, flagged = [], {}
    for world, table in tables.items():
        flagged.update(unconverged(table))
        columns += [Column(f"{world}:{k}", f"{world}: {by_key[k].label}", by_key[k].better, by_key[k].digits)
                    for k in HEADLINE]  # fmt: skip
        for entry in table:
            row = merged.setdefault(entry["simulator"], {"simulator": entry["simulator"]})
            for key in (k + suffix for k in HEADLINE for suffix in ("", "_std", "_n")):
                if key in entry:
                    row[f"{world}:{key}"] = entry[key]
    labels = marked_labels(list(merged), {**LABELS, "wo_bin": "w/o bin (best tau, Stage-II)"}, flagged)
    return markdown_table(
        list(merged.values()), columns, labels=labels, notes=False, exclude_from_best=(REFERENCE, *flagged)
    )


def merge_results(world_dirs: list[Path]) -> tuple[list[dict], dict]:
    """(rows, {seed: sweep}) of several runs' <world>/results.json, in seed order. A seed found in two of them
    is an error (the table would count it twice), as is a missing file. A sweep without the sensor-effect
    results takes them from its seed's benchmark/summary.json where that exists."""
    rows, sweeps, origin = [], {}, {}
    for world_dir in world_dirs:
        path = world_dir / "results.json"
        if not path.is_file():
            raise SystemExit(f"{path}: no results.json (run bench_protocol.py with this --out first)")
        saved = json.loads(path.read_text())
        for key, sweep in saved["sweeps"].items():
            seed = int(key)
            if seed in origin:
                raise SystemExit(f"{path}: seed {seed} is also in {origin[seed]}: merge runs of different seeds")
            origin[seed], sweeps[seed] = path, sweep
            summary = world_dir / f"seed{seed}" / "benchmark" / "summary.json"
            if "effects" not in sweep and summary.is_file():  # runs from before the effects were kept here
                sweep["effects"] = json.loads(summary.read_text()).get("effect_reproduction") or {}
        rows += saved["rows"]
    rows.sort(key=lambda r: r.get("train_seed", 0))  # stable: each seed's rows keep their order
    return rows, dict(sorted(sweeps.items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. train.steps=400")
    p.add_argument("--out", type=Path, default=Path("runs/protocol"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--worlds", nargs="+", default=["procedural", "sensor_only"])
    p.add_argument("--taus", type=float, nargs="+", default=list(TAUS), help="w/o bin thresholds (metres)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--quick", action="store_true", help="CI sizes (the notebooks' quick=True)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-fuse", action="store_true", help="skip the 3D metrics (TSDF fusion needs open3d)")
    p.add_argument("--summarize-only", action="store_true", help="rewrite the tables from <out>/<world>/results.json")
    p.add_argument(
        "--merge", type=Path, nargs="+", default=[],
        help="with --summarize-only: add the seeds of these outs' <world>/results.json (seeds run as separate "
        "processes, e.g. one per core, with --out elsewhere) to <out>'s and rewrite its tables",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.merge and not args.summarize_only:
        p.error("--merge adds finished seeds to <out>'s tables: use it with --summarize-only")
    from sim2real_kit.io import atomic_write_json, atomic_write_text

    parts, tables = [], {}
    for world in args.worlds:
        world_dir = args.out / world
        if args.summarize_only:  # the tables again from results.json (e.g. after a change of the summary)
            rows, sweeps = merge_results([world_dir, *(m / world for m in args.merge)])
            table, md = summarize(world, rows, sweeps, sorted(sweeps))
            if args.merge:
                atomic_write_json(
                    world_dir / "results.json", {"rows": rows, "table": table, "sweeps": sweeps, "argv": sys.argv}
                )
            atomic_write_text(world_dir / "results.md", md)
            parts.append(md)
            tables[world] = table
            continue
        rows, sweeps, shared, t0 = [], {}, None, time.perf_counter()
        for seed in args.seeds:
            seed_rows, sweeps[seed] = run_seed(world_dir, seed, args, shared)
            rows += seed_rows
            shared = shared or world_dir / f"seed{seed}" / "data"
            print(f"[{world}] seed {seed} done at {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            table, md = summarize(world, rows, sweeps, list(sweeps))  # after every seed: a stopped run keeps it
            atomic_write_json(
                world_dir / "results.json", {"rows": rows, "table": table, "sweeps": sweeps, "argv": sys.argv}
            )
            atomic_write_text(world_dir / "results.md", md)
        parts.append(md)
        tables[world] = table
    head = ["### Headline: every world, mean ± std over training seeds", "", headline(tables)] if tables else []
    atomic_write_text(args.out / "results.md", "\n".join([*head, *parts]))
    print("\n".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
