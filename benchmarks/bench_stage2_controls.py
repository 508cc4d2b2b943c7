"""Does Stage-II help, and why? Stage-I vs Stage-II with the controls, over seeds (issue 17, "the demo must
teach the method").

For each seed, one run of the demo's flow (notebooks 02-04: Stage-I, discriminator flags, Stage-II) and, on
the same dataset and from the same Stage-I, the controls:

- `stage1_long`: Stage-I trained on for Stage-II's steps (more steps, no re-weighting, no second condition);
- `stage2_norew`: Stage-II without the loss re-weighting (the paper's "w/o re-w"), same budget;
- `stage2_<other condition>`: Stage-II conditioned on the other `stage2.condition` (depth vs residual).

Every row is scored on the val split with the run's metrics: residual W1 to real (mm), the share of patches
the frozen Stage-I discriminator judges fake (%), hole rate. The table gives mean ± std over seeds and the
paired difference to Stage-I (same seed, same frames). The dataset is the demo's (seed 0's procedural world),
shared by every seed, so the spread is the model's, not the data's.

    python benchmarks/bench_stage2_controls.py --out runs/stage2_controls --seeds 0 1 2        # demo size, ~1 h
    python benchmarks/bench_stage2_controls.py --out /tmp/s2c --seeds 0 1 --quick               # CI size, minutes
    # seeds as parallel processes (one GPU), then one table:
    python benchmarks/bench_stage2_controls.py --out /tmp/s2c_0 --seeds 0 ... & (seed 1, 2 alike); wait
    python benchmarks/bench_stage2_controls.py --out /tmp/s2c --merge /tmp/s2c_0 /tmp/s2c_1 /tmp/s2c_2

Writes <out>/results.json and <out>/results.md (and prints the table). Each seed's rows are also saved as they
are measured, in <out>/seed<k>/rows.json (rewritten after each row), and `--merge` reads a folder's results.json
or, for a run stopped midway, those rows.json (the table says which seeds are partial and which rows are not
measured). The table ends with the paired Stage-II − control difference: re-weighting, or just more steps?"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

from sim2real_kit.realism_test import mean_std

ROWS = ("cad", "stage1", "stage1_long", "stage2", "stage2_norew", "stage2_other")


def _row_metrics(run, base, stage: int, cfg) -> dict:
    from sim2real_kit.flagging import run_share_judged_fake
    from sim2real_kit.notebook import realism_metrics

    val = run.load_samples(stage, "val", run.layout(cfg))
    m = realism_metrics(val, stage)
    return {
        "w1_mm": m["w1_mm"],
        "w1_cad_mm": m["w1_cad_mm"],
        "w1_pooled_mm": m["w1_pooled_mm"],
        "w1_pooled_cad_mm": m["w1_pooled_cad_mm"],
        "hole_rate": m["hole_rate"],
        "fake_pct": 100 * run_share_judged_fake(base, val, val.sims[stage], cfg),  # the base run's Stage-I disc
        "fake_real_pct": 100 * run_share_judged_fake(base, val, val.real, cfg),
    }


PARTIAL = "rows.json"  # per seed folder: the rows measured so far, rewritten after each (a call may stop anytime)


def _log(seed: int, t0: float, msg: str) -> None:
    """One line per phase on stderr (the GPU script's seed log): when a call stops, the log says where."""
    print(
        f"[{time.strftime('%H:%M:%S')} +{time.perf_counter() - t0:.0f} s] seed {seed}: {msg}",
        file=sys.stderr,
        flush=True,
    )


def read_partial(seed_dir: Path) -> dict:
    """A seed's rows.json: the rows measured so far (`partial` true until every row is in)."""
    return json.loads((Path(seed_dir) / PARTIAL).read_text())


def run_seed(
    out: Path,
    seed: int,
    preset: str,
    quick: bool,
    shared_data: Path | None,
    progress: bool,
    overrides: list[str],
    skip: tuple[str, ...] = (),
    stage2_steps: int | None = None,
) -> dict:
    """One seed's rows. stage2_steps: Stage-II's steps (and the control's extra steps) when they differ from
    Stage-I's `train.steps` (Stage-I trained to convergence, then a shorter Stage-II; default the same).
    Each row is scored as soon as its samples exist and saved in <out>/seed<k>/rows.json, so a run stopped
    midway (a device call's time limit) keeps the rows it measured (`--merge` tables them as partial)."""
    from sim2real_kit import flagging, notebook, simulate, stage1, stage2
    from sim2real_kit.io import atomic_write_json
    from sim2real_kit.run import read_json

    base_dir = out / f"seed{seed}"
    base_dir.mkdir(parents=True, exist_ok=True)
    if shared_data is not None and not (base_dir / "data").exists():
        os.symlink(os.path.relpath(shared_data.resolve(), base_dir.resolve()), base_dir / "data")
    t0 = time.perf_counter()
    base, cfg = notebook.setup(base_dir, preset, quick, seed, overrides)
    cfg2 = cfg if stage2_steps is None else copy.deepcopy(cfg).override([f"train.steps={int(stage2_steps)}"])
    other = "residual" if cfg.stage2.condition == "depth" else "depth"
    nan = float("nan")
    entry = {
        "seed": seed,
        "rows": {},
        "other_condition": other,
        "condition": cfg.stage2.condition,
        "flag_rate_train": nan,
        "flag_rate_val": nan,
        "disc_val_auc": nan,
        "steps": cfg.train.steps,
        "stage2_steps": cfg2.train.steps,
        "skip": list(skip),
        "partial": True,
    }

    def save() -> None:
        entry["seconds"] = time.perf_counter() - t0
        atomic_write_json(base_dir / PARTIAL, entry)

    def score(row: str, run, stage: int) -> None:
        entry["rows"][row] = _row_metrics(run, base, stage, cfg)
        if row == "stage1":
            entry["rows"]["cad"] = {"w1_mm": entry["rows"]["stage1"]["w1_cad_mm"],
                                    "w1_pooled_mm": entry["rows"]["stage1"]["w1_pooled_cad_mm"]}  # fmt: skip
        save()
        _log(seed, t0, f"{row} scored: W1 {entry['rows'][row]['w1_mm']:.2f} mm")

    stage1.train_stage1(base, cfg, progress=progress)
    _log(seed, t0, f"Stage-I trained ({cfg.train.steps} steps)")
    for split in ("val", "train"):
        if not base.has_samples(1, split):
            simulate.sample_split(base, cfg, split, stage=1, progress=progress)
    _log(seed, t0, "Stage-I sampled (val, train)")
    if base.flags_state(1) != "ok":  # missing, or made from samples drawn since
        flagging.train_and_flag(base, cfg, stage=1, progress=progress)
    flags = read_json(base.disc_metrics(1))
    entry.update(flag_rate_train=flags["train"]["flag_rate"], flag_rate_val=flags["val"]["flag_rate"],
                 disc_val_auc=flags["val_auc"])  # fmt: skip
    _log(seed, t0, f"discriminator trained, {100 * flags['train']['flag_rate']:.1f} % of train patches flagged")
    score("stage1", base, 1)
    stage2.train_chain(base, cfg2, 2, progress=progress)
    _log(seed, t0, f"Stage-II trained ({cfg2.train.steps} steps) and sampled")
    score("stage2", base, 2)
    control = stage2.stage1_control(base, cfg2, progress=progress)
    _log(seed, t0, "control trained and sampled")
    score("stage1_long", control, 1)
    for name, override in (("stage2_norew", "stage2.reweight=false"), ("stage2_other", f"stage2.condition={other}")):
        if name in skip:
            continue
        folder = name if name == "stage2_norew" else f"stage2_{other}"
        run, ccfg = stage2.control_run(base, cfg2, folder, [override], share=("stage1", "disc"))
        stage2.train_chain(run, ccfg, 2, progress=progress, final_splits=("val",))
        _log(seed, t0, f"{name} trained and sampled")
        score(name, run, 2)
    entry["partial"] = False
    save()
    return entry


def summarize(per_seed: list[dict]) -> tuple[dict, str]:
    """Mean ± std per row and metric, and the paired difference to Stage-I (row - Stage-I, same seed). Seeds
    of a stopped run (`partial`) count in the rows they have; a row no seed has says "not measured" unless
    every seed skipped it (--skip)."""
    nan = float("nan")
    summary: dict = {}
    for row in ROWS:
        for metric in ("w1_mm", "w1_pooled_mm", "fake_pct", "hole_rate"):
            vals = [s["rows"].get(row, {}).get(metric, nan) for s in per_seed]
            ref = [s["rows"].get("stage1", {}).get(metric, nan) for s in per_seed]
            summary.setdefault(row, {})[metric] = mean_std(vals)
            summary[row][f"{metric}_vs_stage1"] = mean_std([v - r for v, r in zip(vals, ref)])
        summary[row]["n"] = sum(1 for s in per_seed if row in s["rows"])
    cond = per_seed[0]["condition"]
    names = {
        "cad": "clean CAD",
        "stage1": "Stage-I",
        "stage1_long": "Stage-I, + Stage-II's steps (control)",
        "stage2": f"Stage-II (condition {cond})",
        "stage2_norew": f"Stage-II w/o re-weighting (condition {cond})",
        "stage2_other": f"Stage-II (condition {per_seed[0]['other_condition']})",
    }
    lines = [
        f"seeds {', '.join(str(s['seed']) for s in per_seed)}; mean ± std; Δ = row − Stage-I of the same seed",
        "",
        "| row | W1 matched (mm) | Δ W1 (mm) | W1 pooled (mm) | Δ pooled (mm) | judged fake (%) | Δ fake (pp) "
        "| holes (%) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def fmt(pair, scale=1.0, digits=1):
        m, sd = pair
        return "–" if m != m else f"{m * scale:.{digits}f} ± {sd * scale:.{digits}f}"

    for row in ROWS:
        r = summary[row]
        if r["n"] == 0:
            if row != "cad" and not all(row in s.get("skip", ()) for s in per_seed):
                lines.append(f"| {names[row]} | not measured | | | | | | |")
            continue  # else a row every seed skipped (--skip)
        label = names[row] + ("" if r["n"] == len(per_seed) else f" ({r['n']} of {len(per_seed)} seeds)")
        lines.append(
            f"| {label} | {fmt(r['w1_mm'])} | {fmt(r['w1_mm_vs_stage1'])} | {fmt(r['w1_pooled_mm'])} | "
            f"{fmt(r['w1_pooled_mm_vs_stage1'])} | {fmt(r['fake_pct'])} | "
            f"{fmt(r['fake_pct_vs_stage1'])} | {fmt(r['hole_rate'], 100, 2)} |"
        )
    flags = mean_std([100 * s["flag_rate_train"] for s in per_seed])
    auc = mean_std([s["disc_val_auc"] for s in per_seed])
    lines += ["", f"flagged share of Stage-I train patches: {fmt(flags)} %; discriminator val ROC-AUC {fmt(auc, 1, 3)}"]
    paired = [s for s in per_seed if "stage2" in s["rows"] and "stage1_long" in s["rows"]]
    if paired:  # the question of the control: re-weighting, or just more steps?
        d = {m: mean_std([s["rows"]["stage2"][m] - s["rows"]["stage1_long"][m] for s in paired])
             for m in ("w1_mm", "w1_pooled_mm", "fake_pct")}  # fmt: skip
        summary["stage2_vs_control"] = {**d, "n": len(paired)}
        lines += ["", f"Stage-II − control, paired over {len(paired)} seed(s): W1 matched {fmt(d['w1_mm'])} mm, "
                  f"W1 pooled {fmt(d['w1_pooled_mm'])} mm, judged fake {fmt(d['fake_pct'])} pp"]  # fmt: skip
    stopped = [s for s in per_seed if s.get("partial")]
    if stopped:
        lines += ["", "partial: " + "; ".join(
            f"seed {s['seed']} stopped after {', '.join(r for r in ROWS if r in s['rows']) or 'no row'}" for s in stopped
        ) + " (their rows.json)"]  # fmt: skip
    return summary, "\n".join(lines)


def _merged_seeds(folder: Path) -> list[dict]:
    """The seeds of one --out folder: its results.json, else the rows.json of its seed folders (a stopped run)."""
    if (folder / "results.json").is_file():
        return json.loads((folder / "results.json").read_text())["per_seed"]
    return [read_partial(d) for d in sorted(folder.glob("seed*")) if (d / PARTIAL).is_file()]


def write_results(out: Path, per_seed: list[dict]) -> str:
    """`out`/results.json (per seed + summary) and results.md (the table, returned), written atomically."""
    from sim2real_kit.io import atomic_write_json, atomic_write_text

    summary, table = summarize(per_seed)
    atomic_write_json(out / "results.json", {"per_seed": per_seed, "summary": summary, "argv": sys.argv})
    atomic_write_text(out / "results.md", table + "\n")
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/stage2_controls"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--quick", action="store_true", help="CI sizes (the notebooks' quick=True)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. train.steps=400")
    p.add_argument("--data", type=Path, help="an existing dataset folder for every seed (else seed 1's run makes it)")
    p.add_argument("--skip", nargs="*", default=[], choices=("stage2_norew", "stage2_other"), help="rows not trained")
    p.add_argument(
        "--stage2-steps", type=int, help="Stage-II's steps and the control's extra steps (default: train.steps)"
    )
    p.add_argument("--merge", type=Path, nargs="+", help="only summarise the results.json of these --out folders")
    args = p.parse_args(argv)
    if args.merge:  # seeds run as parallel processes (one --out each), summarised together
        per_seed = [s for d in args.merge for s in _merged_seeds(d)]
        if not per_seed:
            raise SystemExit(f"--merge: no results.json and no seed*/{PARTIAL} under {', '.join(map(str, args.merge))}")
        args.out.mkdir(parents=True, exist_ok=True)
        print(write_results(args.out, sorted(per_seed, key=lambda s: s["seed"])))
        return 0
    per_seed = []
    shared = args.data
    for seed in args.seeds:
        per_seed.append(
            run_seed(
                args.out,
                seed,
                args.preset,
                args.quick,
                shared,
                not args.no_progress,
                args.overrides,
                tuple(args.skip),
                args.stage2_steps,
            )
        )
        shared = shared or args.out / f"seed{seed}" / "data"
        print(json.dumps({k: v for k, v in per_seed[-1].items() if k != "rows"}), file=sys.stderr)
        table = write_results(args.out, per_seed)  # after every seed: a run stopped early keeps what it measured
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
