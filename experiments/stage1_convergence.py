"""Stage-I to convergence (issue 22): how many steps until the loss is flat, and what W1 / the two-sample AUC do
on the way. Stage-I is trained in segments, `train.steps` set to each milestone in turn; the run resumes from its
last checkpoint and the lr is constant after the warm-up, so the segments are one long run (`training.py`: a
resumed run gives the losses of an uninterrupted one). At each milestone the val split is sampled and scored as
the benchmark scores it (`notebook.realism_metrics`: matched and pooled residual W1, hole rates;
`realism_test.two_sample_auc`: fresh patch discriminators trained on half of the val scenes, tested on the
others), and the loss's flatness is measured: mean loss over the last 20 % of the steps vs the 20 % before.

Resumable: a milestone already scored (`<run>/convergence/<N>.json`) is skipped, so the same command on a warm
machine continues where a time limit stopped it. Every call copies what it has to --out (table, json, losses,
the samples of val scene s0000's frames 000-003 per milestone).

    python experiments/stage1_convergence.py --run /tmp/conv --data /tmp/d0 --out $OUT --preset small \\
        --milestones 450 900 1350 1800 2400 3000 -- train.batch_size=32 train.lr=0.0002 sampling.steps=20
    python experiments/stage1_convergence.py --run /tmp/c --data runs/demo/data --out /tmp/c_out --quick \\
        --milestones 4 8    # CPU smoke test"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_sample_quality import auc_halves  # noqa: E402


def loss_flatness(losses_csv: Path, steps: int) -> dict:
    """Mean loss over the last 20 % of `steps` and the 20 % before, and their relative change (negative: still
    falling). The issue's criterion "flat" is |change| below the noise of the window means (reported beside)."""
    rows = [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(losses_csv.open()) if int(r["step"]) <= steps]
    last = [v for s, v in rows if s > 0.8 * steps]
    prev = [v for s, v in rows if 0.6 * steps < s <= 0.8 * steps]
    if len(last) < 2 or len(prev) < 2:
        return {"loss_last20": float("nan"), "loss_prev20": float("nan"), "loss_change": float("nan")}
    a, b = statistics.fmean(last), statistics.fmean(prev)
    sem = (statistics.stdev(last) ** 2 / len(last) + statistics.stdev(prev) ** 2 / len(prev)) ** 0.5
    return {"loss_last20": a, "loss_prev20": b, "loss_change": (a - b) / b, "loss_change_sem": sem / b}


def score(run, cfg, auc_seeds) -> dict:
    """Sample the val split with Stage-I and score it (W1 matched / pooled, holes, two-sample AUC)."""
    from sim2real_kit import simulate
    from sim2real_kit.notebook import realism_metrics
    from sim2real_kit.realism_test import two_sample_auc

    t0 = time.perf_counter()
    simulate.sample_split(run, cfg, "val", stage=1, progress=False)
    t_sample = time.perf_counter() - t0
    val = run.load_samples(1, "val", run.layout(cfg))
    m = realism_metrics(val, 1)
    row = {k: m[k] for k in ("frames", "w1_mm", "w1_cad_mm", "w1_pooled_mm", "w1_pooled_cad_mm", "hole_rate")}
    for key in ("residual_std_mm", "residual_std_real_mm", "residual_mean_mm", "residual_mean_real_mm"):
        row[key] = m[key]
    row["sample_s"] = t_sample
    if auc_seeds:
        tr, te = auc_halves(val)  # the two-sample test's scenes, as bench_sample_quality splits them
        auc = two_sample_auc(val, val.sims[1], cfg, tr, te, seeds=auc_seeds)
        row["auc"], row["auc_std"] = auc["auc"], auc["auc_std"]
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| steps | loss, last 20 % | change vs the 20 % before | W1 matched mm | W1 pooled mm | two-sample AUC | "
        "holes % | train s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        auc = f"{r['auc']:.3f} ± {r['auc_std']:.3f}" if "auc" in r else "–"
        lines.append(
            f"| {r['steps']} | {r['loss_last20']:.4f} | {100 * r['loss_change']:+.1f} % (± {100 * r.get('loss_change_sem', 0):.1f}) "
            f"| {r['w1_mm']:.1f} | {r['w1_pooled_mm']:.1f} | {auc} | {100 * r['hole_rate']:.1f} | {r['train_s']:.0f} |"
        )
    if rows:
        lines.append(
            f"\nclean CAD: W1 matched {rows[0]['w1_cad_mm']:.1f} mm, pooled {rows[0]['w1_pooled_cad_mm']:.1f} mm"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--run", type=Path, required=True, help="run folder (made on the first call, resumed after)")
    ap.add_argument("--data", type=Path, required=True, help="a dataset layout (gpu_experiment.py make-data)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--quick", action="store_true", help="CI sizes (smoke test)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--milestones", type=int, nargs="+", required=True)
    ap.add_argument("--auc-seeds", type=int, nargs="*", default=[0])
    ap.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = ap.parse_args(argv)

    from sim2real_kit import notebook, stage1

    args.out.mkdir(parents=True, exist_ok=True)
    args.run.mkdir(parents=True, exist_ok=True)
    record = args.run / "convergence"
    record.mkdir(exist_ok=True)
    _export(args, record)  # what earlier calls scored, in case this one is stopped before its first milestone
    for n in sorted(args.milestones):
        if (record / f"{n}.json").is_file():
            continue
        run, cfg = notebook.setup(
            args.run,
            args.preset,
            args.quick,
            args.seed,
            [f"data.root={args.data.resolve()}", *args.overrides, f"train.steps={n}"],
        )
        t0 = time.perf_counter()
        stage1.train_stage1(run, cfg, progress=False)
        row = {"steps": n, "train_s": time.perf_counter() - t0, **loss_flatness(run.losses_csv(1), n)}
        row.update(score(run, cfg, args.auc_seeds))
        (record / f"{n}.json").write_text(json.dumps(row, indent=1))
        shots = record / f"samples_{n}"
        shots.mkdir(exist_ok=True)
        for png in sorted(run.samples_dir(1, "val").glob("s0000/00[0-3]_*.png")):
            shutil.copy(png, shots / png.name)
        print(json.dumps(row), flush=True)
        _export(args, record)
    _export(args, record)
    return 0


def _export(args, record: Path) -> None:
    """Copy the record, the losses and the table to --out (called after every milestone: a killed call keeps them)."""
    rows = sorted((json.loads(p.read_text()) for p in record.glob("*.json")), key=lambda r: r["steps"])
    shutil.copytree(record, args.out / "convergence", dirs_exist_ok=True)
    for name in ("losses.csv", "val.csv"):
        src = args.run / "stage1" / name
        if src.is_file():
            shutil.copy(src, args.out / f"stage1_{name}")
    (args.out / "convergence.json").write_text(json.dumps(rows, indent=1))
    (args.out / "convergence.md").write_text(table(rows) + "\n")
    print(table(rows), flush=True)


if __name__ == "__main__":
    sys.exit(main())
