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


def effects_markdown(effects, labels: dict) -> str:
    """One table of `effect_reproduction` results: a row per ground-truth sensor effect (hole and displacement
    effects: the share of the effect's pixels the simulator reproduces; noise-type effects: std of the
    simulator's residual over the real one's) and one for false holes (hole rate outside every hole effect),
    a column per simulator. `effects`: {simulator: result} of one seed, or a list of them (one per training
    seed): mean ± std over the seeds where the simulator has a result ("error" entries are left out). "" when
    no simulator has one."""
    runs = [effects] if isinstance(effects, dict) else list(effects)
    names, kinds = [], {}
    for run in runs:
        for name, result in run.items():
            if "error" in result or "effects" not in result:
                continue
            names += [name] if name not in names else []
            for effect, m in result["effects"].items():
                kinds.setdefault(effect, m.get("kind"))
    if not names:
        return ""

    def cell(values) -> str:
        vals = [float(v) for v in values if isinstance(v, (int, float)) and v == v]
        if not vals:
            return "—"
        mean = float(np.mean(vals))
        return f"{mean:.2f}" if len(vals) == 1 else f"{mean:.2f} ± {float(np.std(vals, ddof=1)):.2f}"

    def values(name, effect=None, key="sim"):
        """The simulator's value per seed: effect's `key`, or the false-hole rate (effect None)."""
        done = [run[name] for run in runs if name in run and "effects" in run[name]]
        if effect is None:
            return [r.get("holes_elsewhere", {}).get(key) for r in done]
        return [r["effects"].get(effect, {}).get(key) for r in done]

    seeds = f", mean ± std over {len(runs)} seeds" if len(runs) > 1 else ""
    lines = [
        f"Sensor effects reproduced (the sensor's ground-truth effect masks{seeds}; hole and displacement effects: "
        "share of the effect's pixels the simulator reproduces, 1 for the real capture at native resolution; "
        "noise-type effects: std of the simulator's residual over the real one's on the effect's pixels, 1 = the "
        "effect's spread; false holes: hole rate outside every hole effect):",
        "",
        "| effect | " + " | ".join(labels.get(n, n) for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for effect, kind in kinds.items():
        key = "std_ratio" if kind == "noise" else "reproduced"
        cells = [cell(values(n, effect, key)) for n in names]
        lines.append(f"| {effect} ({kind}) | " + " | ".join(cells) + " |")
    cells = [cell(values(n)) for n in names]
    lines.append("| false holes (outside hole effects) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
