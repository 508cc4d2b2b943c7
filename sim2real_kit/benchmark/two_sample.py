"""The benchmark's realism tests beside the per-pixel metrics: the classifier two-sample test per simulator
(a fresh 3D patch discriminator real vs that simulator, trained on the benchmark split, tested on the table's
frames; `realism_test.two_sample_auc`) and the share of each sensor effect a simulator reproduces
(`realism_test.effect_reproduction`, worlds with the sensor's ground-truth effect masks)."""

from __future__ import annotations

import numpy as np

from sim2real_kit.benchmark.simulators import (
    REFERENCE,
)
from sim2real_kit.config import Config
from sim2real_kit.errors import Sim2RealError
from sim2real_kit.run import SampleSet


# ====================================================================== realism tests
def _realism_tests(sims, outputs, samples: SampleSet, layout, cfg: Config, progress: bool) -> tuple[list[dict], str]:
    """Two-sample test per simulator (`realism_test.two_sample_auc`): a fresh discriminator per seed
    (`benchmark.c2st_seeds`) trained real vs the simulator on the benchmark split (scenes no simulator trained
    on) and tested on the frame set (the val split's scenes). One row per simulator x seed with `c2st_auc`;
    a note when the layout has no benchmark split."""
    from sim2real_kit.benchmark.simulators import _dataset_samples
    from sim2real_kit.realism_test import two_sample_auc
    from sim2real_kit.run import SampleSet as _SampleSet

    bcfg = cfg.benchmark
    if bcfg.c2st_seeds <= 0:
        return [], "two-sample test: off (benchmark.c2st_seeds = 0)"
    if not layout.has_split("benchmark"):
        return [], "two-sample test: not run, the dataset has no benchmark split (data.benchmark_fraction)"
    bench = _dataset_samples(cfg, "benchmark", layout)
    both = _SampleSet(
        [*bench.refs, *samples.refs],
        np.concatenate([bench.cad, samples.cad]),
        np.concatenate([bench.real, samples.real]),
        {},
        samples.camera,
        np.concatenate([bench.poses, samples.poses]),
    )
    train, test = list(range(len(bench.refs))), list(range(len(bench.refs), len(both.refs)))
    seeds = list(range(bcfg.c2st_seeds))
    rows, skipped = [], []
    for name, sim in sims.items():
        if name == REFERENCE or name not in outputs:
            continue
        try:
            if sim.from_layout is not None:
                on_bench = sim.from_layout(layout, bench.refs, cfg.data.size, cfg.data.eval_crop, 0)
            elif sim.from_cad is not None:
                on_bench = sim.from_cad(bench.cad, bench.camera, 0)
            else:
                skipped.append(name)
                continue
            depth = np.concatenate([np.asarray(on_bench, np.float32), outputs[name]])
            result = two_sample_auc(
                both, depth, cfg, train, test, seeds=seeds, steps=bcfg.c2st_steps or None, progress=False
            )
        except Sim2RealError as e:
            rows.append({"simulator": name, "seed": None, "note": f"two-sample test: {e}"})
            continue
        for seed, auc in zip(seeds, result["auc_per_seed"]):
            rows.append({"simulator": name, "seed": None, "c2st_seed": seed, "c2st_auc": auc, "note": ""})
    note = (
        f"two-sample test: {len(seeds)} discriminator seeds, trained on the benchmark split ({len(train)} frames), "
        f"tested on the {len(test)} frames of the table"
    )
    if skipped:
        note += f"; no output on the benchmark split: {', '.join(skipped)}"
    return rows, note


def _effect_reproduction(outputs, samples: SampleSet, layout, cfg: Config) -> dict:
    """{simulator: {effect: measures}} of the sensor's ground-truth effects (procedural world only): how much of
    each effect each simulator's first seed reproduces (`realism_test.effect_reproduction`)."""
    from sim2real_kit.flagging import effect_masks
    from sim2real_kit.realism_test import sensor_effect_reproduction

    masks = effect_masks(layout, samples.refs, samples.cad.shape[-1], cfg.data.eval_crop)
    if masks is None:
        return {}
    out = {}
    for name, depth in outputs.items():
        try:
            out[name] = sensor_effect_reproduction(layout, samples, depth, cfg, masks=masks)
        except Sim2RealError as e:
            out[name] = {"error": str(e)}
    return out


FALSE_HOLES = "false holes (outside hole effects)"


def effects_matrix(
    effects,
) -> tuple[list[str], list[tuple[str, str]], np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """`effect_reproduction` results as a matrix: (simulators, rows [(effect, kind)] + the false-hole row,
    mean [R, S], std [R, S] (sample std over seeds, 0 for one), n [R, S] (seeds with a value), the effects
    left out). The value is the share of the effect's pixels reproduced (hole and displacement effects), the
    std ratio sim / real (noise-type effects) or the hole rate outside every hole effect (last row).
    `effects`: {simulator: result} of one seed, or a list of them (one per training seed); entries with
    "error" are left out; NaN where none. An effect no simulator has a value for, the real capture included
    (its mask is empty in the data: e.g. 1 mm quantisation moves depth less than the effect threshold), is
    not a row: its name is in the last element, for the views to name it."""
    runs = [effects] if isinstance(effects, dict) else list(effects)
    names, kinds = [], {}
    for run in runs:
        for name, result in run.items():
            if "error" in result or "effects" not in result:
                continue
            names += [name] if name not in names else []
            for effect, m in result["effects"].items():
                kinds.setdefault(effect, m.get("kind"))
    rows = [*kinds.items(), (FALSE_HOLES, "hole")]
    shape = (len(rows), len(names))
    mean, std, n = np.full(shape, np.nan), np.zeros(shape), np.zeros(shape, int)
    for j, name in enumerate(names):
        done = [run[name] for run in runs if name in run and "effects" in run[name]]
        for i, (effect, kind) in enumerate(rows):
            if effect == FALSE_HOLES:
                vals = [r.get("holes_elsewhere", {}).get("sim") for r in done]
            else:
                key = "std_ratio" if kind == "noise" else "reproduced"
                vals = [r["effects"].get(effect, {}).get(key) for r in done]
            vals = [float(v) for v in vals if isinstance(v, (int, float)) and v == v]
            n[i, j] = len(vals)
            if vals:
                mean[i, j] = float(np.mean(vals))
                std[i, j] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    keep = [i for i, (effect, _) in enumerate(rows) if effect == FALSE_HOLES or n[i].sum() > 0]
    kept = set(keep)
    empty = [effect for i, (effect, _) in enumerate(rows) if i not in kept]
    return names, [rows[i] for i in keep], mean[keep], std[keep], n[keep], empty


def effects_markdown(effects, labels: dict) -> str:
    """One table of `effect_reproduction` results (`effects_matrix`): a row per ground-truth sensor effect
    (hole and displacement effects: the share of the effect's pixels the simulator reproduces; noise-type
    effects: std of the simulator's residual over the real one's) and one for false holes, a column per
    simulator; mean ± std when `effects` is a list over training seeds. "" when no simulator has a result."""
    names, rows, mean, std, n, empty = effects_matrix(effects)
    if not names:
        return ""
    seeds = "" if isinstance(effects, dict) or len(effects) < 2 else f", mean ± std over {len(effects)} seeds"

    def cell(i, j) -> str:
        if n[i, j] == 0:
            return "—"
        return f"{mean[i, j]:.2f}" if n[i, j] == 1 else f"{mean[i, j]:.2f} ± {std[i, j]:.2f}"

    lines = [
        f"Sensor effects reproduced (the sensor's ground-truth effect masks{seeds}; hole and displacement effects: "
        "share of the effect's pixels the simulator reproduces, 1 for the real capture at native resolution; "
        "noise-type effects: std of the simulator's residual over the real one's on the effect's pixels, 1 = the "
        "effect's spread; false holes: hole rate outside every hole effect):",
        "",
        "| effect | " + " | ".join(labels.get(name, name) for name in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for i, (effect, kind) in enumerate(rows):
        label = effect if effect == FALSE_HOLES else f"{effect} ({kind})"
        lines.append(f"| {label} | " + " | ".join(cell(i, j) for j in range(len(names))) + " |")
    if empty:
        lines += ["", f"(no pixel of these effects in the data: {', '.join(empty)})"]
    return "\n".join(lines) + "\n"


def effects_heatmap(effects, labels: dict | None = None, path=None):
    """Heatmap of `effects_matrix`: sensor effects (rows) x simulators (columns), each cell's value written
    on it (± std over seeds). Colour centred on 1, the real capture's own value at native resolution: white =
    the effect as the real sensor makes it, blue = too little of it (clean CAD: 0), red = too much; grey: no
    value, and the false-hole row (its ideal is 0, not 1: written, not coloured); effects with no pixel in the
    data are named under the axis, not drawn. Returns the matplotlib Figure (also written atomically as PNG to
    `path`), None when no simulator has a result (datasets without sensor ground truth)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    from sim2real_kit.io import atomic_path

    names, rows, mean, std, n, empty = effects_matrix(effects)
    if not names:
        return None
    labels = labels or {}
    fig = plt.figure(figsize=(max(6.0, 1.3 * len(names) + 3.0), 0.45 * len(rows) + 1.8), dpi=100)
    plt.close(fig)
    ax = fig.add_subplot(1, 1, 1)
    shade = np.clip(mean, 0.0, 2.0)
    shade[-1] = np.nan  # false holes: ideal 0, not 1: written, not coloured
    cmap = plt.get_cmap("coolwarm").with_extremes(bad="0.92")
    image = ax.imshow(shade, cmap=cmap, norm=TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=2.0), aspect="auto")
    for i in range(len(rows)):
        for j in range(len(names)):
            text = "—" if n[i, j] == 0 else f"{mean[i, j]:.2f}" + (f"\n±{std[i, j]:.2f}" if n[i, j] > 1 else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([labels.get(name, name) for name in names], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([e if e == FALSE_HOLES else f"{e} ({k})" for e, k in rows], fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.03, label="reproduced (1 = like the real sensor)")
    seeds = "" if isinstance(effects, dict) or len(effects) < 2 else f", mean ± std over {len(effects)} seeds"
    ax.set_title(f"Sensor effects reproduced per simulator (ground-truth effect masks{seeds})", fontsize=10)
    if empty:
        ax.set_xlabel(f"no pixel of these effects in the data: {', '.join(empty)}", fontsize=8)
    fig.tight_layout()
    if path is not None:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    return fig
