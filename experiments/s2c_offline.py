"""Issue 22, off the device: the two-sample AUC and the same-frames figure of the Stage-II controls campaign.

`experiments/gpu_stage2_controls.sh` brings back each seed's val samples (`val_seed<k>.tgz`: every row's own
simulated maps) and the val split's CAD and real maps once (`val_ref.tgz`). Here, on the CPU:
- the benchmark's two-sample test (`realism_test.two_sample_auc`: a fresh CAD-guided patch discriminator per
  discriminator seed, trained real vs the row's output on half of the val scenes, ROC-AUC on the other half;
  0.5 = indistinguishable) for every row of every campaign seed, and for clean CAD as the anchor;
- the samples of every row on the same frames (residual to CAD, mm) as one PNG.

    python experiments/s2c_offline.py <folder with the tgz files> --data .gpu/data --out docs/results_data/<name>

Writes c2st.json (per campaign seed and row: auc, per discriminator seed), c2st.md (mean ± std over campaign
seeds, paired Stage-II − control) and samples.png.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

# row -> (folder inside seed<k>/, the sim key): each row's own maps
ROWS = {
    "stage1": ("stage1", "sim1"),
    "stage1_long": ("controls/stage1_long/stage1", "sim1"),
    "stage2": ("stage2", "sim2"),
    "stage2_norew": ("controls/stage2_norew/stage2", "sim2"),
}
LABELS = {
    "cad": "clean CAD",
    "stage1": "Stage-I",
    "stage1_long": "control: Stage-I, longer",
    "stage2": "Stage-II",
    "stage2_norew": "Stage-II w/o re-weighting",
}


def _extract(folder: Path, into: Path) -> None:
    for tgz in sorted(folder.glob("val_*.tgz")):
        with tarfile.open(tgz) as t:
            t.extractall(into, filter="data")


def load_reference(root: Path, layout, seed: int):
    """The val split's SampleSet (cad, real, camera, poses; sims {1: that seed's Stage-I}) from
    seed<seed>/stage1/samples/val of `root`: what `RunFolder.load_samples` reads."""
    from sim2real_kit.run import RunFolder

    return RunFolder(root / f"seed{seed}").load_samples(1, "val", layout)


def load_row(root: Path, seed: int, row: str, refs) -> np.ndarray | None:
    """A row's simulated maps [F, S, S] metres on `refs`, or None when the seed has not sampled it (all frames)."""
    from sim2real_kit.depth import read_depth_png

    sub, key = ROWS[row]
    d = root / f"seed{seed}" / sub / "samples" / "val"
    paths = [d / r.scene / f"{r.frame}_{key}.png" for r in refs]
    if not all(p.is_file() for p in paths):
        return None
    return np.stack([read_depth_png(p) for p in paths])


def figure(samples, sims_by_row: dict, path: Path, frames: int = 4) -> None:
    """Residual to CAD (mm) of the real capture and of every row (first campaign seed) on the same frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [("real capture", samples.real)] + [(LABELS[r], s) for r, s in sims_by_row.items()]
    fig, axes = plt.subplots(frames, len(cols), figsize=(2.2 * len(cols), 2.2 * frames), squeeze=False)
    for i in range(frames):
        cad = samples.cad[i]
        for j, (name, depth) in enumerate(cols):
            res = np.where((depth[i] > 0) & (cad > 0), (depth[i] - cad) * 1000, np.nan)
            ax = axes[i, j]
            im = ax.imshow(res, cmap="RdBu_r", vmin=-60, vmax=60)
            ax.imshow(np.where(depth[i] > 0, np.nan, 1.0), cmap="gray_r", vmin=0, vmax=2)  # holes grey
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=8)
            if j == 0:
                ref = samples.refs[i]
                ax.set_ylabel(f"{ref.scene}/{ref.frame}", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.6, label="depth − CAD (mm); grey: hole")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="folder with val_seed<k>.tgz and val_ref.tgz")
    p.add_argument("--data", type=Path, default=Path(".gpu/data"), help="the campaign's dataset (poses, scenes)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="campaign seeds")
    p.add_argument("--disc-seeds", type=int, default=3, help="discriminator seeds per row")
    p.add_argument("--preset", default="small", help="the campaign's preset (its disc settings)")
    a = p.parse_args(argv)

    from sim2real_kit.config import Config
    from sim2real_kit.data.layout import DepthLayout
    from sim2real_kit.io import atomic_write_json, atomic_write_text
    from sim2real_kit.realism_test import mean_std, two_sample_auc

    cfg = Config.preset_config(a.preset)
    layout = DepthLayout(a.data)
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _extract(a.folder, root)
        ref_seed = next((s for s in a.seeds if (root / f"seed{s}" / "stage1/samples/val").is_dir()), a.seeds[0])
        samples = load_reference(root, layout, ref_seed)
        scenes = sorted({r.scene for r in samples.refs})
        half = set(scenes[: len(scenes) // 2])
        train = [i for i, r in enumerate(samples.refs) if r.scene in half]
        test = [i for i, r in enumerate(samples.refs) if r.scene not in half]
        disc_seeds = list(range(a.disc_seeds))
        result = {
            "frames": len(samples.refs),
            "train_scenes": sorted(half),
            "test_scenes": sorted(set(scenes) - half),
            "disc_seeds": disc_seeds,
            "disc_steps": cfg.disc.steps,
            "rows": {},
        }

        def auc(depth) -> dict:
            r = two_sample_auc(samples, depth, cfg, train, test, seeds=disc_seeds)
            return {"auc": r["auc"], "auc_per_seed": r["auc_per_seed"], "n_test_sim": r["n_test_sim"]}

        result["rows"]["cad"] = {"all": auc(samples.cad)}
        print(f"clean CAD: AUC {result['rows']['cad']['all']['auc']:.3f}", flush=True)
        first: dict = {}
        for seed in a.seeds:
            for row in ROWS:
                depth = load_row(root, seed, row, samples.refs)
                if depth is None:
                    continue
                if seed == a.seeds[0] or row not in first:
                    first.setdefault(row, depth)
                result["rows"].setdefault(row, {})[str(seed)] = auc(depth)
                print(f"seed {seed} {row}: AUC {result['rows'][row][str(seed)]['auc']:.3f}", flush=True)
                atomic_write_json(a.out / "c2st.json", result)
        figure(samples, {r: first[r] for r in ROWS if r in first}, a.out / "samples.png")

    lines = [
        f"two-sample AUC (fresh patch discriminator, {len(disc_seeds)} discriminator seeds x {cfg.disc.steps} steps, "
        f"trained on {len(train)} val frames of {len(half)} scenes, tested on {len(test)} frames of the other "
        f"{len(scenes) - len(half)}; 0.5 = indistinguishable from real)",
        "",
        "| row | AUC, mean ± std over campaign seeds | n seeds |",
        "|---|---|---|",
    ]
    for row, per in result["rows"].items():
        vals = [v["auc"] for v in per.values()]
        m, s = mean_std(vals)
        lines.append(f"| {LABELS[row]} | {m:.3f} ± {s:.3f} | {len(vals) if row != 'cad' else '-'} |")
    s2, c = result["rows"].get("stage2", {}), result["rows"].get("stage1_long", {})
    paired = [s2[k]["auc"] - c[k]["auc"] for k in s2 if k in c]
    if paired:
        m, s = mean_std(paired)
        lines += ["", f"paired Stage-II − control: {m:+.3f} ± {s:.3f} AUC over {len(paired)} seeds "
                  f"({', '.join(f'{d:+.3f}' for d in paired)})"]  # fmt: skip
    atomic_write_json(a.out / "c2st.json", result)
    atomic_write_text(a.out / "c2st.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
