"""`evaluate_real_sample`: the real-sample section of the benchmark (see the package docstring) and its
tables, figures and summary."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sim2real_kit.config import Config, validity_channel, validity_head
from sim2real_kit.errors import ConfigError
from sim2real_kit.holes import NO_THRESHOLD
from sim2real_kit.io import atomic_write_json, atomic_write_text
from sim2real_kit.real_sample.fewshot import simulate_tiles, train_heldout_stage1
from sim2real_kit.real_sample.frames import (
    CROSS_NOTE,
    CROSS_REGIONS,
    DEFAULT_SAMPLE,
    HELD_OUT_NOTE,
    LABELS,
    REGION_TEXT,
    REGIONS,
    SILHOUETTE_PX,
    RealFrames,
    concat_frames,
    import_real_sample,
    load_frames,
    resolve_holdout,
)
from sim2real_kit.real_sample.measure import _Region, baseline_simulators, region_metrics
from sim2real_kit.report import plain
from sim2real_kit.run import RunFolder, as_run

# ====================================================================== the evaluation
COLUMNS_SPEC = (
    ("w1_mm", "residual W1 mm ↓", "lower", 3),
    ("res_mean_mm", "residual mean mm", None, 2),
    ("res_std_mm", "residual std mm", None, 2),
    ("abs_p50_mm", "abs. residual p50 mm", None, 2),
    ("abs_p90_mm", "abs. residual p90 mm", None, 2),
    ("abs_p99_mm", "abs. residual p99 mm", None, 1),
    ("hole_all_pct", "holes %", None, 1),
    ("hole_gap_pct", "hole gap pp ↓", "lower", 1),
    ("edge_mae_mm", "edge mean abs. residual mm", None, 2),
    ("flat_mae_mm", "flat mean abs. residual mm", None, 2),
)


@dataclass
class RealSampleResult:
    """What `evaluate_real_sample` measured and wrote: rows (region x simulator x seed), table (mean ± std
    over seeds, one entry per region x simulator, `benchmark.compare_table` keys plus "region"), summary
    (summary.json), written paths, matplotlib figures by name, seconds."""

    out_dir: Path
    rows: list[dict]
    table: list[dict]
    summary: dict
    paths: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def row(self, region: str, simulator: str) -> dict:
        for entry in self.table:
            if entry["region"] == region and entry["simulator"] == simulator:
                return entry
        raise KeyError(f"no row ({region!r}, {simulator!r}) in the real-sample table")

    def markdown(self) -> str:
        return self.paths["results.md"].read_text() if "results.md" in self.paths else ""


def evaluate_real_sample(
    run: RunFolder | str | Path,
    cfg: Config,
    src: str | Path = DEFAULT_SAMPLE,
    out: str | Path | None = None,
    *,
    train_samples: Sequence[str | Path] | None = None,
    test_samples: Sequence[str | Path] | None = None,
    holdout: int | str | None = None,
    steps: int | None = None,
    seeds: int | Sequence[int] | None = None,
    stage1: bool = True,
    physics_prior: bool = False,
    progress: bool = True,
) -> RealSampleResult:
    """The real-sample section of the benchmark (see the package docstring) for a run folder.

    Two modes. Held-out object (default): the sample `src`; holdout: class id or name (default
    `benchmark.real_sample_holdout`, else the largest object); the few-shot Stage-I is scored on the held-out
    object and, with `benchmark.real_sample_seen`, on the objects it trained on. Train / test (`train_samples`
    and `test_samples`, one or more sample folders each): Stage-I trains on every object of the training samples'
    frames and is scored on the test samples' frames, all object pixels and their silhouettes (`_evaluate_cross`).

    cfg: the call's resolved config. steps: Stage-I steps (default `benchmark.real_sample_steps`, else
    `train.steps`); seeds: count or list (default `benchmark.seeds`). stage1=False: physical baselines only.
    physics_prior: also a Stage-I with the physical model's output (`benchmark.physical_model`) as a second
    condition (`_score_physics_prior`): physics alone (`physical`), learned alone (`stage1`) and physics + learned
    (`stage1_physics`) side by side. Holes: a `data.holes: mask` Stage-I generates none; with the validity channel a
    pixel is a hole where its P(valid) is below the pipeline's threshold (`benchmark.real_sample_calibrate_holes`:
    also rows at a threshold calibrated on the training pixels); with `model.validity: head` the holes are drawn
    from the head fit on the training pixels (`fewshot.heldout_validity_head`; one field per frame, shared by its
    tiles) and cannot be calibrated (ConfigError). results.md and summary.json (`stage1.holes`) name the hole model.
    Writes results.csv, results.md, summary.json and figures/ into `out` (default the run's
    benchmark/real_sample, benchmark/real_sample_cross in the train / test mode)."""
    from sim2real_kit.report import write_csv

    t_start = time.perf_counter()
    run = as_run(run)
    bcfg = cfg.benchmark
    seed_list = list(range(int(seeds))) if isinstance(seeds, int) else list(seeds or range(int(bcfg.seeds)))
    if not seed_list:
        raise ConfigError("seeds is empty: give a count >= 1 or a list of seeds")
    steps = int(steps if steps is not None else (bcfg.real_sample_steps or cfg.train.steps))
    if stage1 and bcfg.real_sample_calibrate_holes and validity_head(cfg):
        raise ConfigError(
            f"benchmark.real_sample_calibrate_holes (--calibrate-holes) with model.validity = 'head': {NO_THRESHOLD}"
        )
    if stage1 and bcfg.real_sample_calibrate_holes and cfg.data.holes != "model":
        raise ConfigError(
            f"benchmark.real_sample_calibrate_holes (--calibrate-holes) calibrates a hole model's threshold: it needs "
            f"data.holes=model, got data.holes = {cfg.data.holes!r}"
        )
    if train_samples or test_samples:
        if not (train_samples and test_samples):
            given, missing = ("train", "test") if train_samples else ("test", "train")
            raise ConfigError(
                f"{given} samples given without {missing} samples: the train / test mode needs both "
                f"(--train-sample A [B ...] --test-sample C [D ...]); without them the held-out-object mode runs on "
                "--sample"
            )
        if holdout is not None:
            raise ConfigError("holdout applies to the held-out-object mode, not to train / test samples")
        out_dir = Path(out) if out is not None else run.benchmark_dir / "real_sample_cross"
        return _evaluate_cross(
            run, cfg, train_samples, test_samples, out_dir, steps, seed_list, stage1, physics_prior, progress, t_start
        )
    out_dir = Path(out) if out is not None else run.benchmark_dir / "real_sample"
    # 1. the sample, the held-out object, the regions
    frames = load_frames(import_real_sample(run, src, progress=progress))
    if stage1 and frames.test_only:
        raise ConfigError(
            f"the real sample {src} is test-only (one frame): the held-out-object mode would train Stage-I "
            "on it; train on another sample and score on this one (--train-sample OTHER --test-sample THIS), or "
            "run the physical baselines only (--no-stage1)"
        )
    holdout_id = resolve_holdout(frames, bcfg.real_sample_holdout if holdout is None else holdout)
    masks, regions = _regions(frames, holdout_id, bcfg)
    # 2. simulators: physical baselines, few-shot Stage-I, real
    scores = _Scores(regions)
    sims = baseline_simulators(cfg)
    labels = {**LABELS, **{n: s.label for n, s in sims.items()}}
    for name, sim in sims.items():
        for seed in seed_list if sim.stochastic else seed_list[:1]:
            scores.add(name, seed, sim.from_cad(frames.cad, frames.camera, seed), REGIONS)
    train_summary: dict = {}
    if stage1:
        pipe, train_summary = train_heldout_stage1(
            frames, cfg, holdout_id, run.real_sample_dir / "stage1", steps, progress=progress
        )
        seen = bcfg.real_sample_seen  # off (quick): tiles over the held-out object only, a quarter of the work
        tiled, where = (masks["objects"], ("heldout", "seen")) if seen else (masks["heldout"], ("heldout",))
        calibration = (frames, masks["seen"], "the other objects' pixels (Stage-I's training pixels)")
        train_summary.update(_score_stage1(scores, pipe, frames, tiled, where, cfg, seed_list, calibration))
        if physics_prior:
            train_summary["physics_prior"] = _score_physics_prior(
                scores, sims["physical"], cfg, [frames], [frames], tiled, where, holdout_id,
                run.real_sample_dir / "stage1_prior", steps, seed_list, progress,
            )  # fmt: skip
    scores.add("real", seed_list[0], frames.real, REGIONS)
    # 3. tables, files, figures
    rows, table, metric_keys = scores.table([*sims, *STAGE1_ROWS, "real"])
    name = frames.classes.get(holdout_id, str(holdout_id))
    held_px = int(masks["heldout"].sum())
    paths = {
        "results.csv": write_csv(out_dir / "results.csv", rows, ["region", "simulator", "seed", *metric_keys, "note"])
    }
    head = (
        f"Real sample ({frames.sensor}): {len(frames.refs)} frames of {frames.camera.width}x{frames.camera.height} from "
        f"{frames.root}; run `{run.root.name}`; seeds {seed_list} (deterministic simulators: seed {seed_list[0]}); "
        f"held-out object {holdout_id} ({name}, {held_px} px over the frames)."
    )
    md = _markdown(head, table, labels, cfg, steps, train_summary if stage1 else None, REGIONS)
    atomic_write_text(out_dir / "results.md", md)
    paths["results.md"] = out_dir / "results.md"
    figures = _figures(frames, regions["heldout"], frames.object_mask(holdout_id), scores.first, labels,
                       "heldout", f"the held-out object {name}", f"held-out object {holdout_id} ({name})")  # fmt: skip
    paths.update(_write_figures(figures, table, out_dir / "figures", ("objects", "heldout")))
    seconds = time.perf_counter() - t_start
    summary = _summary(
        table,
        metric_keys,
        frames,
        holdout_id,
        name,
        held_px,
        seed_list,
        steps,
        stage1,
        train_summary,
        labels,
        cfg,
        seconds,
    )
    atomic_write_json(out_dir / "summary.json", plain(summary, strict_json=True))
    paths["summary.json"] = out_dir / "summary.json"
    run.record_step("real_sample", cfg, holdout=name, steps=steps, seeds=seed_list)
    return RealSampleResult(out_dir, rows, table, summary, paths, figures, seconds)


def _evaluate_cross(
    run: RunFolder,
    cfg: Config,
    train_srcs: Sequence[str | Path],
    test_srcs: Sequence[str | Path],
    out_dir: Path,
    steps: int,
    seed_list: list[int],
    stage1: bool,
    physics_prior: bool,
    progress: bool,
    t_start: float,
) -> RealSampleResult:
    """The train / test mode of `evaluate_real_sample`: Stage-I (every object) on the training samples' frames,
    physical baselines and Stage-I scored on the test samples' object pixels and silhouettes."""
    from sim2real_kit.report import write_csv

    bcfg = cfg.benchmark
    # 1. the samples (nothing of a test sample on the training side), the regions of the test frames
    train = [load_frames(import_real_sample(run, s, progress=progress)) for s in train_srcs]
    test = [load_frames(import_real_sample(run, s, progress=progress)) for s in test_srcs]
    _check_disjoint(train, test)
    train_frames, frames = concat_frames(train), concat_frames(test)
    masks = {"objects": frames.object_mask(), "silhouettes": frames.silhouette_mask(SILHOUETTE_PX)}
    regions = {k: _Region.of(frames, masks[k], bcfg.edge_threshold_m, bcfg.edge_dilate) for k in CROSS_REGIONS}
    # 2. simulators: physical baselines (each test sample with its own camera), Stage-I, real
    scores = _Scores(regions)
    sims = baseline_simulators(cfg)
    labels = {
        **LABELS,
        "stage1": "Stage-I (trained on the training samples)",
        "stage1_physics": "Stage-I + physics prior (trained on the training samples)",
        **{n: s.label for n, s in sims.items()},
    }
    for name, sim in sims.items():
        for seed in seed_list if sim.stochastic else seed_list[:1]:
            depth = np.concatenate([sim.from_cad(t.cad, t.camera, seed) for t in test])
            scores.add(name, seed, depth, CROSS_REGIONS)
    train_summary: dict = {}
    if stage1:
        pipe, train_summary = train_heldout_stage1(
            train_frames, cfg, None, run.real_sample_dir / "stage1_cross", steps, progress=progress
        )
        calibration = (train_frames, train_frames.object_mask(), "the training samples' object pixels")
        train_summary.update(
            _score_stage1(scores, pipe, frames, masks["objects"], CROSS_REGIONS, cfg, seed_list, calibration)
        )
        if physics_prior:
            train_summary["physics_prior"] = _score_physics_prior(
                scores, sims["physical"], cfg, train, test, masks["objects"], CROSS_REGIONS, None,
                run.real_sample_dir / "stage1_cross_prior", steps, seed_list, progress,
            )  # fmt: skip
    scores.add("real", seed_list[0], frames.real, CROSS_REGIONS)
    # 3. tables, files, figures
    rows, table, metric_keys = scores.table([*sims, *STAGE1_ROWS, "real"])
    paths = {
        "results.csv": write_csv(out_dir / "results.csv", rows, ["region", "simulator", "seed", *metric_keys, "note"])
    }
    what = _cross_what(train, test)
    head = (
        f"Real samples, train / test ({what['text']}). Train: {_sample_list(train)}. Test: {_sample_list(test)}. "
        f"Run `{run.root.name}`; seeds {seed_list} (deterministic simulators: seed {seed_list[0]})."
    )
    md = _markdown(head + " " + CROSS_NOTE, table, labels, cfg, steps, train_summary if stage1 else None, CROSS_REGIONS)
    atomic_write_text(out_dir / "results.md", md)
    paths["results.md"] = out_dir / "results.md"
    figures = _figures(frames, regions["objects"], masks["objects"], scores.first, labels, "objects",
                       "the test samples' objects", "test frame, every object")  # fmt: skip
    paths.update(_write_figures(figures, table, out_dir / "figures", CROSS_REGIONS))
    seconds = time.perf_counter() - t_start
    summary = {
        "mode": "cross",
        "train": [_sample_entry(t) for t in train],
        "test": [_sample_entry(t) for t in test],
        **{k: v for k, v in what.items() if k != "text"},
        "seeds": list(seed_list),
        "stage1": _stage1_entry(stage1, steps, cfg, train_summary),
        "regions": _region_summary(table, metric_keys, labels),
        "note": f"{what['text']}. {CROSS_NOTE}",
        "seconds": seconds,
    }
    summary["w1_mm"] = _w1_by_region(summary["regions"])
    atomic_write_json(out_dir / "summary.json", plain(summary, strict_json=True))
    paths["summary.json"] = out_dir / "summary.json"
    run.record_step("real_sample_cross", cfg, train=[str(t.root) for t in train], test=[str(t.root) for t in test],
                    steps=steps, seeds=seed_list)  # fmt: skip
    return RealSampleResult(out_dir, rows, table, summary, paths, figures, seconds)


STAGE1_ROWS = ("stage1", "stage1_calibrated", "stage1_physics")  # the learned rows, in table order


def _score_stage1(scores, pipe, frames, tiled, where, cfg: Config, seed_list, calibration) -> dict:
    """Rows `stage1` (seeds `seed_list`) of the Stage-I `pipe` on `frames` over `tiled` [F, H, W], in the regions
    `where`. With `benchmark.real_sample_calibrate_holes` (a `data.holes: model` Stage-I) also rows
    `stage1_calibrated`: a pixel is a hole where the blended P(valid) is below the threshold whose hole rate on
    `calibration` = (frames, region [F, H, W], what) — pixels Stage-I trained on, never a scored one — matches
    the real sensor's there (`simulate.match_hole_rate`; its own draw, seed `cfg.seed + 1001`, as
    `simulate.calibrate_validity_threshold`'s). Both rows then come from one draw per seed at threshold 0 and its
    P(valid): `stage1` at the pipeline's own threshold (a hole where the tiles' blended P(valid) is below it,
    not by the tiles' majority as without calibration). Returns the summary's scalars of the calibration."""
    from sim2real_kit.simulate import match_hole_rate

    def sample(on, region, seed, **kw):
        return simulate_tiles(pipe, on, region, seed, cfg.sampling.steps, cfg.sampling.eta, blend=_blend(cfg), **kw)

    if not cfg.benchmark.real_sample_calibrate_holes:
        for seed in seed_list:
            scores.add("stage1", seed, sample(frames, tiled, seed), where)
        return {}
    on, region, what = calibration
    own = float(pipe.config.get("validity_threshold", 0.5))
    pipe.set_sampling(validity_threshold=0.0)  # every CAD pixel's depth; the threshold applies to P(valid) below
    try:
        depth, prob = sample(on, region, cfg.seed + 1001, return_validity=True)
        cal = match_hole_rate(on.cad, on.real, depth, prob, region=region)
        for seed in seed_list:
            depth, prob = sample(frames, tiled, seed, return_validity=True)
            scores.add("stage1", seed, np.where(prob < own, 0.0, depth), where)
            scores.add("stage1_calibrated", seed, np.where(prob < cal["threshold"], 0.0, depth), where)
    finally:
        pipe.set_sampling(validity_threshold=own)
    return {
        "holes_threshold": cal["threshold"],
        "holes_threshold_default": own,
        "holes_calibrated_on": what,
        "holes_calibration_px": cal["pixels"],
        "holes_calibration_real_pct": 100 * cal["real_rate"],
        "holes_calibration_pct": 100 * cal["rate"],
        "holes_calibration_pct_at_0.5": 100 * cal["rate_at_0.5"],
    }


def _prior_of(sim, samples: list[RealFrames], seed: int) -> np.ndarray:
    """The physical simulator's output [F, H, W] metres on the samples' CAD (each with its own camera)."""
    return np.concatenate([sim.from_cad(t.cad, t.camera, seed) for t in samples]).astype(np.float32)


def _score_physics_prior(
    scores, sim, cfg: Config, train, test, tiled, where, holdout_id, out_dir: Path, steps, seed_list, progress
) -> dict:
    """Physics + learned: Stage-I trained as the plain one on `train` (holdout_id as there) with the physical
    simulator's output on the training CAD as a second condition map (one draw, seed `cfg.seed`), sampled on
    `test` over `tiled` with the draw of the `physical` row's seed; rows "stage1_physics" in `where`. Returns the
    training summary."""
    pipe, summary = train_heldout_stage1(
        concat_frames(train), cfg, holdout_id, out_dir, steps, progress=progress,
        prior=_prior_of(sim, train, cfg.seed), prior_name=cfg.benchmark.physical_model,
    )  # fmt: skip
    frames = concat_frames(test)
    for seed in seed_list:
        prior = _prior_of(sim, test, seed)
        depth = simulate_tiles(
            pipe, frames, tiled, seed, cfg.sampling.steps, cfg.sampling.eta, blend=_blend(cfg), prior=prior
        )
        scores.add("stage1_physics", seed, depth, where)
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, bool, str))}


def _check_disjoint(train: list[RealFrames], test: list[RealFrames]) -> None:
    """Refuse a test sample that is also a training sample, and a test frame whose real depth is byte for byte a
    training frame's (a copied frame): ConfigError naming both."""
    import hashlib

    both = {r for t in train for r in t.roots} & {r for t in test for r in t.roots}
    if both:
        raise ConfigError(f"{', '.join(map(str, sorted(both)))} is both a training and a test sample")
    seen = {}
    for t in train:
        for ref, real in zip(t.refs, t.real):
            seen.setdefault(hashlib.sha1(real.tobytes()).hexdigest(), f"{t.root}: {ref}")
    for t in test:
        for ref, real in zip(t.refs, t.real):
            twin = seen.get(hashlib.sha1(real.tobytes()).hexdigest())
            if twin:
                raise ConfigError(
                    f"test frame {t.root}: {ref} has the same real depth as training frame {twin}: a test frame must "
                    "never be trained on"
                )


def _cross_what(train: list[RealFrames], test: list[RealFrames]) -> dict:
    """{"cross_scene", "cross_sensor", "text"}: what the train / test pair changes (other folders are other scenes;
    the sensors differ when their names do)."""
    train_sensors, test_sensors = {t.sensor for t in train}, {t.sensor for t in test}
    cross_sensor = bool(test_sensors - train_sensors)
    text = "cross-scene and cross-sensor" if cross_sensor else "cross-scene, same sensor"
    text += f": trained on {' + '.join(sorted(train_sensors))}, tested on {' + '.join(sorted(test_sensors))}"
    return {"cross_scene": True, "cross_sensor": cross_sensor, "text": text}


def _sample_list(samples: list[RealFrames]) -> str:
    return "; ".join(
        f"{t.root} ({t.sensor}, {len(t.refs)} frame{'s' * (len(t.refs) != 1)} of {t.camera.width}x{t.camera.height}, "
        f"{int(t.object_mask().sum())} object px)"
        for t in samples
    )


def _sample_entry(t: RealFrames) -> dict:
    return {
        "source": str(t.root),
        "sensor": t.sensor,
        "frames": len(t.refs),
        "frame_size": [t.camera.width, t.camera.height],
        "object_px": int(t.object_mask().sum()),
        "test_only": t.test_only,
    }


def _region_summary(table, metric_keys, labels) -> dict[str, dict]:
    """{region: {simulator: {label, metrics, their std over seeds, seeds, note}}} of the table."""
    regions: dict[str, dict] = {}
    for e in table:
        regions.setdefault(e["region"], {})[e["simulator"]] = {
            "label": labels.get(e["simulator"], e["simulator"]),
            **{k: e[k] for k in metric_keys},
            **{f"{k}_std": e[f"{k}_std"] for k in metric_keys},
            "seeds": e["n"],
            "note": e["note"],
        }
    return regions


def _regions(frames, holdout_id: int, bcfg) -> tuple[dict, dict]:
    """({region: pixel mask [F, H, W]}, {region: _Region}) of all objects, the held-out one, the others."""
    masks = {
        "objects": frames.object_mask(),
        "heldout": frames.object_mask(holdout_id),
        "seen": frames.object_mask() & (frames.instance != holdout_id),
    }
    return masks, {k: _Region.of(frames, m, bcfg.edge_threshold_m, bcfg.edge_dilate) for k, m in masks.items()}


def _blend(cfg: Config) -> str:
    """`simulate_tiles`' blend for `sampling.native_mode`: MultiDiffusion tiles ("sample") or one window per frame."""
    return "full" if cfg.sampling.native_mode == "full" else "sample"


def _where_sampled(cfg: Config, size: int, covering: str) -> str:
    """How Stage-I was run on the frames, for results.md."""
    if cfg.sampling.native_mode == "full":
        return f"one window per frame around {covering}, in one pass (sampling.native_mode full, no tiles)"
    return f"{size}-px tiles covering {covering}"


class _Scores:
    """Rows (region x simulator x seed) of the regions' metrics, and each simulator's first full-frame output."""

    def __init__(self, regions: dict):
        self.regions, self.rows, self.first = regions, [], {}  # regions in table order

    def add(self, name: str, seed: int, depth: np.ndarray, where: Sequence[str], note: str = "") -> None:
        self.first.setdefault(name, depth)
        for region in where:
            metrics, notes = region_metrics(depth, self.regions[region])
            note_text = "; ".join(filter(None, [note, *notes]))
            self.rows.append({"region": region, "simulator": name, "seed": seed, **metrics, "note": note_text})

    def table(self, order: list[str]) -> tuple[list[dict], list[dict], list[str]]:
        """(rows sorted, mean ± std per region x simulator, metric keys)."""
        from sim2real_kit.benchmark import compare_table

        metric_keys = [k for k in self.rows[0] if k not in ("region", "simulator", "seed", "note")]
        table: list[dict] = []
        names = list(self.regions)
        for region in names:
            region_rows = [r for r in self.rows if r["region"] == region]
            region_rows.sort(key=lambda r: order.index(r["simulator"]))
            table += [{"region": region, **entry} for entry in compare_table(region_rows, metric_keys)]
        rows = sorted(self.rows, key=lambda r: (names.index(r["region"]), order.index(r["simulator"]), r["seed"]))
        return rows, table, metric_keys


def _markdown(
    head: str, table, labels, cfg: Config, steps: int, train_summary: dict | None, regions: Sequence[str]
) -> str:
    """results.md: what was measured and how to read it, then one table per region."""
    from sim2real_kit.benchmark import Column, markdown_table

    md = [
        head + " Residual = CAD − depth on the region's pixels; W1 = Wasserstein-1 of the residual distribution vs "
        "the real sensor's (mm); holes = share of the region's pixels without depth. Best in bold (the `real` row "
        "excluded).\n",
    ]
    if train_summary is not None:
        cross = "objects" in regions and "heldout" not in regions
        covering = "the objects" if cross or cfg.benchmark.real_sample_seen else "the held-out object"
        md.append(
            f"Stage-I: {cfg.preset} preset model trained {steps} steps (batch {cfg.train.batch_size}) on "
            f"{cfg.data.size}x{cfg.data.size} native-resolution crops, residual scale "
            f"{train_summary.get('residual_scale', cfg.model.residual_scale):.4g}, DDIM-{cfg.sampling.steps} on "
            f"{_where_sampled(cfg, cfg.data.size, covering)}. {'' if cross else HELD_OUT_NOTE}\n"
        )
        md.append(f"Holes: {_holes_text(cfg, cross)}.\n")
        if "holes_threshold" in train_summary:
            t = train_summary
            md.append(
                f"Holes (`data.holes: model`): `stage1` is a hole where P(valid) < {t['holes_threshold_default']:g} "
                f"(the pipeline's threshold); `stage1_calibrated` where P(valid) < {t['holes_threshold']:.2f}, the "
                f"threshold whose hole rate on {t['holes_calibrated_on']} ({t['holes_calibration_px']} px, its own "
                f"draw) matches the real sensor's there: {t['holes_calibration_pct']:.1f} % vs "
                f"{t['holes_calibration_real_pct']:.1f} % real ({t['holes_calibration_pct_at_0.5']:.1f} % at 0.5). No "
                "scored pixel sets it.\n"
            )
        if "physics_prior" in train_summary:
            md.append(
                f"Stage-I + physics prior (`stage1_physics`): the same Stage-I trained with the "
                f"{cfg.benchmark.physical_model} model's output on the CAD as a second condition map (as Stage-II "
                f"sees Stage-I's output; training: one draw, seed {cfg.seed}; sampling: the draw of the `physical` "
                "row's seed). Physics alone = `physical`, learned alone = `stage1`, physics + learned = "
                "`stage1_physics`.\n"
            )
        if cfg.model.target_std > 0:
            md.append(
                f"The residual scale comes from the real residual's std on the training pixels (model.target_std = "
                f"{cfg.model.target_std}): the spread of Stage-I's output is calibrated on real data by construction, "
                "so read W1 together with where the large residuals go (edge vs flat columns).\n"
            )
    columns = [Column(*c) for c in COLUMNS_SPEC]
    for region in regions:
        entries = [e for e in table if e["region"] == region]
        md.append(markdown_table(entries, columns, header=f"**{region}**: {REGION_TEXT[region]}", labels=labels))
    return "\n".join(md)


def _write_figures(figures: dict, table, folder: Path, charted: Sequence[str]) -> dict[str, Path]:
    """The figures as PNG, plus W1 bar charts of the `charted` regions."""
    from sim2real_kit.benchmark import bar_chart
    from sim2real_kit.viz import save_figure

    paths = {f"figures/{key}.png": save_figure(fig, folder / f"{key}.png") for key, fig in figures.items()}
    for region in charted:
        entries = [e for e in table if e["region"] == region]
        title = f"Residual W1 vs the real sensor, {region} (mm, lower is better)"
        p = bar_chart(entries, "w1_mm", title, folder / f"w1_{region}.png")
        if p is not None:
            paths[f"figures/w1_{region}.png"] = p
    return paths


def _figures(frames, region, mask, first, labels, key: str, what: str, panel_title: str) -> dict:
    """Residual histograms on a region (`_Region`) and CAD / real / simulated panels around its pixels `mask`
    [F, H, W] in frame 0: {f"{key}_histograms", f"{key}_panels"}."""
    from sim2real_kit import viz

    cad = region.samples.cad
    shown = {labels.get(k, k): first[k] for k in ("real", "physical", "stage1", "random") if k in first}
    figs = {
        f"{key}_histograms": viz.residual_histograms(
            cad, shown, range_mm=15, title=f"CAD − depth on {what} ({len(frames.refs)} frames)"
        )
    }
    ys, xs = np.nonzero(mask[0])
    if ys.size:
        H, W = frames.cad.shape[-2:]
        top, bottom = max(int(ys.min()) - 12, 0), min(int(ys.max()) + 13, H)
        left, right = max(int(xs.min()) - 12, 0), min(int(xs.max()) + 13, W)
        win = (0, slice(top, bottom), slice(left, right))
        maps = {"CAD": frames.cad[win], **{lbl: d[win] for lbl, d in shown.items()}}
        figs[f"{key}_panels"] = viz.depth_panels(
            maps, cad=cad[win], residual_of=tuple(shown), limit_mm=8, title=f"{frames.refs[0]}: {panel_title}"
        )
    return figs


def hole_model(cfg: Config) -> str:
    """Where a Stage-I's holes come from: "mask" (none generated), "validity channel" or "validity head"."""
    return "validity head" if validity_head(cfg) else "validity channel" if validity_channel(cfg) else "mask"


def _holes_text(cfg: Config, cross: bool) -> str:
    """results.md's sentence on Stage-I's holes (`hole_model`)."""
    if validity_head(cfg):
        pixels = (
            "the training samples' object pixels" if cross else "the other objects' pixels (never the held-out one)"
        )
        return (
            "validity head (`model.validity: head`): the denoiser trained as a `data.holes: mask` one, a separate CNN "
            f"fit {cfg.train.validity_head_steps} steps on {cfg.data.size}-px native-resolution crops of {pixels} "
            "gives P(valid) from the CAD, and holes are drawn at it (a hole where a correlated uniform u > P(valid); "
            "one u field per frame, shared by its tiles), not thresholded"
        )
    if validity_channel(cfg):
        return (
            "validity channel (`data.holes: model`): denoised beside the residual, a hole where its P(valid) is below "
            "the threshold"
        )
    return "`data.holes: mask` (holes out of the loss; Stage-I generates none)"


def _stage1_entry(stage1: bool, steps: int, cfg: Config, train_summary: dict) -> dict:
    """The summary's `stage1` entry (both modes): trained or not, steps, model size, the trainer's scalars."""
    return {
        "trained": bool(stage1),
        "steps": steps if stage1 else 0,
        "size": int(cfg.data.size),
        "native_mode": cfg.sampling.native_mode,  # how it ran on the frames: tiles or whole frames
        "holes": hole_model(cfg),  # where Stage-I's holes come from
        **{k: v for k, v in train_summary.items() if isinstance(v, (int, float, bool, str))},
        "physics_prior": cfg.benchmark.physical_model if "physics_prior" in train_summary else "",
    }


def _w1_by_region(regions: dict) -> dict:
    """region -> simulator -> residual W1 (mm), from `_region_summary`'s table."""
    return {r: {s: v["w1_mm"] for s, v in sims.items()} for r, sims in regions.items()}


def _summary(
    table, metric_keys, frames, holdout_id, name, held_px, seeds, steps, stage1, train_summary, labels, cfg, seconds
) -> dict:
    regions = _region_summary(table, metric_keys, labels)
    return {
        "mode": "heldout",
        "sensor": frames.sensor,
        "source": str(frames.root),
        "frames": len(frames.refs),
        "frame_size": [frames.camera.width, frames.camera.height],
        "holdout": {"id": int(holdout_id), "name": name, "pixels": held_px},
        "seeds": list(seeds),
        "stage1": _stage1_entry(stage1, steps, cfg, train_summary),
        "regions": regions,
        "w1_mm": _w1_by_region(regions),
        "note": HELD_OUT_NOTE,
        "seconds": seconds,
    }
