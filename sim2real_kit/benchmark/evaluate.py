"""`evaluate_run`: every simulator of a run folder on one split, in one table (DESIGN §5), in six steps:
choose the simulators, load them and the one frame set, the real references, score every simulator x seed,
the downstream task, and the tables and files. The realism tests live in `two_sample`, the downstream task in
`downstream_eval`."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sim2real_kit.benchmark.downstream_eval import (
    DOWNSTREAM_SPLIT,
    _downstream_columns,
    run_benchmark_downstream,
)
from sim2real_kit.benchmark.realism import (
    KEYS_3D,
    OBJ_KEYS,
    ObjectRef,
    _nan_metrics,
    depth_realism,
    fuse_scenes,
    object_realism,
    object_references,
    realism_3d,
    view_consistency_mm,
)
from sim2real_kit.benchmark.simulators import (
    LABELS,
    REFERENCE,
    SIMULATORS,
    Simulator,
    _frame_list,
    _scenes,
    _stage_of,
    available_simulators,
    benchmark_samples,
    make_simulator,
)
from sim2real_kit.benchmark.tables import (
    COLUMNS,
    DOWNSTREAM_COLUMNS,
    FIGURES,
    BenchmarkResult,
    _best,
    _finite,
    bar_chart,
    best_entries,
    compare_table,
    markdown_table,
)
from sim2real_kit.benchmark.two_sample import _effect_reproduction, _realism_tests, effects_heatmap, effects_markdown
from sim2real_kit.config import Config
from sim2real_kit.data.layout import DepthLayout
from sim2real_kit.errors import ConfigError, MissingArtifactError, Sim2RealError
from sim2real_kit.io import atomic_write_json, atomic_write_text
from sim2real_kit.report import plain, write_csv
from sim2real_kit.run import RunFolder, SampleSet, as_run


# ====================================================================== the benchmark
def _seed_list(seeds) -> list[int]:
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise ConfigError(f"benchmark seeds must be >= 1, got {seeds}")
        return list(range(int(seeds)))
    out = [int(s) for s in seeds]
    if not out:
        raise ConfigError("benchmark seeds is an empty list")
    return out


@dataclass
class _Frames:
    """The one frame set every simulator runs on, and what is measured of the real capture on it."""

    samples: SampleSet
    scenes: dict[str, list[int]]
    edges: np.ndarray  # [F, S, S] CAD depth edges
    real_holes: dict[str, float]  # %: all / edge / flat
    reference: dict  # real and CAD reference values (holes, tail, view disagreement, failed fusions, objects)
    real_meshes: dict  # {scene: fused real mesh}
    bins: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # W1 bins {name: [F, S, S] mask}
    objects: list[ObjectRef] = dataclasses.field(default_factory=list)  # per-object 3D: the objects scored
    object_note: str = ""  # why there are no per-object columns (no instance ids, no object)
    disco: dict = dataclasses.field(default_factory=dict)  # real meshes' side of DisCo, prepared once (realism_3d)


def evaluate_run(
    run: RunFolder | str | Path,
    cfg: Config,
    out=None,
    simulators: Sequence[str | Simulator] | None = None,
    seeds: int | Sequence[int] | None = None,
    split: str = "val",
    fuse: bool = True,
    downstream: bool = True,
    progress: bool = True,
    *,
    train_baselines: bool = False,
    baseline_steps: int | None = None,
) -> BenchmarkResult:
    """Benchmark every simulator of a run folder on `split` (DESIGN §5; see the package docstring).

    cfg: the call's resolved config (its `benchmark` section: seeds, DisCo points, downstream steps ...).
    simulators: names of `SIMULATORS` and/or `Simulator` objects; default `cfg.benchmark.simulators`,
    plus pix2pix / cyclegan / direct / stage3 when the run holds them, plus "real" (in `SIMULATORS`
    order; unavailable ones get a row saying why). seeds: a count (seeds 0..n-1) or a list; default
    `cfg.benchmark.seeds`; deterministic simulators run the first seed only; stage k's seed 0 is its
    saved sample, other seeds are re-sampled with its pipeline. fuse: the 3D metrics (TSDF fusion per scene);
    downstream: the downstream task when the layout has instance ids (else a note). train_baselines /
    baseline_steps: train missing pix2pix / CycleGAN baselines first (default steps `baselines.steps`).
    Writes results.csv, results.md, summary.json, figures/*.png, meshes/*.ply under `out` (default the run's
    benchmark/). Frame sets that differ between the evaluated stages, samples of another split, or a
    simulator returning other frames raise Sim2RealError naming them."""
    t_start = time.perf_counter()
    run = as_run(run)
    if not run.has_config():
        raise MissingArtifactError(
            "run folder has no config.yaml (make the run with notebook 01 / `sim2real synth` first)", run.root
        )
    out_dir = Path(out) if out is not None else run.benchmark_dir
    seed_list = _seed_list(cfg.benchmark.seeds if seeds is None else seeds)
    names, requested, stages_wanted = _choose_simulators(run, cfg, split, simulators, train_baselines)
    layout = run.layout(cfg)
    samples, stage_samples = benchmark_samples(run, cfg, split, stages_wanted, layout)
    sims, skipped = _load_simulators(
        run, cfg, split, requested, stage_samples, train_baselines, baseline_steps, progress
    )
    frames = _references(samples, cfg, fuse, layout)
    disc_path = run.disc_model(1)
    disc_model = _frozen_discriminator(disc_path)
    rows, per_scene, first_meshes, outputs = _score_simulators(sims, frames, cfg, seed_list, fuse, disc_model, progress)
    c2st_rows, c2st_note = _realism_tests(sims, outputs, frames.samples, layout, cfg, progress)
    rows += c2st_rows
    effects = _effect_reproduction(outputs, frames.samples, layout, cfg)
    disc_note = f"discriminator {disc_path}" if disc_model is not None else f"no discriminator at {disc_path}"
    for name, reason in skipped.items():
        rows.append({"simulator": name, "seed": None, "frames": 0, "note": f"skipped: {reason}"})
    ds_rows, ds_note = [], "not run (downstream=False)"
    if downstream:
        ds_rows, ds_note = _downstream_rows(
            sims, layout, cfg, split, seed_list, cfg.benchmark.downstream_steps, progress
        )
        rows = _merge_downstream(rows, ds_rows, len(samples.refs))
    return _write_outputs(
        run,
        cfg,
        out_dir,
        split,
        frames,
        seed_list,
        names,
        sims,
        skipped,
        rows,
        per_scene,
        first_meshes,
        ds_rows,
        ds_note,
        f"{disc_note}; {c2st_note}",
        fuse,
        t_start,
        effects,
    )


def _choose_simulators(run: RunFolder, cfg: Config, split: str, simulators, train_baselines: bool):
    """1. (names, requested, stages to load samples of): the config's list, the learned baselines / direct /
    Stage-III that exist, the reference; or the caller's list."""
    availability = available_simulators(run, split)
    if simulators is None:
        wanted = set(cfg.benchmark.simulators) | {REFERENCE}
        optional = ("pix2pix", "cyclegan", "direct", "stage1_long", "stage2_norew", "stage3")
        wanted |= {n for n in optional if availability[n] is None}
        wanted |= {"pix2pix", "cyclegan"} if train_baselines else set()
        extra = [n for n in cfg.benchmark.simulators if n not in SIMULATORS]
        requested = [n for n in SIMULATORS if n in wanted] + extra
    else:
        requested = list(simulators)
    names = []
    for s in requested:
        n = s.name if isinstance(s, Simulator) else str(s)
        if not isinstance(s, Simulator) and n not in SIMULATORS:
            raise ConfigError(f"unknown simulator {n!r} in benchmark.simulators; valid: {', '.join(SIMULATORS)}")
        if n in names:
            raise ConfigError(f"simulator {n!r} is listed twice")
        names.append(n)
    custom = {s.name for s in requested if isinstance(s, Simulator)}
    stages_wanted = [_stage_of(n) for n in names if _stage_of(n) and n not in custom and availability[n] is None]
    return names, requested, stages_wanted


def _load_simulators(run, cfg, split, requested, stage_samples, train_baselines, baseline_steps, progress):
    """2. ({name: Simulator}, {name: why it was skipped})."""
    sims: dict[str, Simulator] = {}
    skipped: dict[str, str] = {}
    for s in requested:
        if isinstance(s, Simulator):
            sims[s.name] = s
            continue
        try:
            sims[s] = make_simulator(
                s,
                run,
                cfg,
                split,
                stage_samples=stage_samples,
                train_baselines=train_baselines,
                baseline_steps=baseline_steps,
                progress=progress,
            )
        except MissingArtifactError as e:
            skipped[s] = str(e)
    return sims, skipped


def _references(samples: SampleSet, cfg: Config, fuse: bool, layout: DepthLayout | None = None) -> _Frames:
    """3. What the real capture (and clean CAD) measure on the frame set: edges, W1 bins, holes, tail of gross
    mismatches, fused real meshes, view disagreement, and the objects of the per-object 3D metrics (CAD
    instance ids of the layout, when it has them and `fuse`)."""
    from sim2real_kit.metrics import depth_edges, hole_rates, residual_bins, tail_share

    bcfg = cfg.benchmark
    max_diff = float(cfg.data.max_diff_m)
    scenes = _scenes(samples.refs)
    edges = depth_edges(samples.cad, bcfg.edge_threshold_m, bcfg.edge_dilate)  # [F, S, S]
    bins = residual_bins(samples.cad, samples.camera, bcfg.edge_threshold_m)
    real_h = hole_rates(samples.cad, samples.real, edge_mask=edges)
    real_holes = {k: 100 * real_h[k] for k in ("all", "edge", "flat")}
    reference = {
        "real": {
            "hole_all_pct": real_holes["all"],
            "hole_edge_pct": real_holes["edge"],
            "hole_flat_pct": real_holes["flat"],
            "tail_pct": 100 * tail_share(samples.cad, samples.real, max_diff),
            "view_mm": view_consistency_mm(samples.real, samples, scenes, max_diff),
        },
        "cad": {"view_mm": view_consistency_mm(samples.cad, samples, scenes, max_diff)},
        "max_diff_m": max_diff,
        "w1_bins_px": {k: int(np.count_nonzero(v)) for k, v in bins.items()},
    }
    real_meshes: dict = {}
    objects: list[ObjectRef] = []
    object_note = "per-object 3D: not run (fuse=False)"
    if fuse:
        real_meshes, why = fuse_scenes(samples.real, samples, scenes, bcfg)
        reference["real"]["fusion_failed"] = why
        instances, object_note = _instances(layout, samples, cfg)
        if instances is not None:
            objects, notes = object_references(samples, instances, scenes)
            object_note = "; ".join(notes) if objects else "per-object 3D: no object visible in the frame set"
        reference["objects"] = {"count": len(objects), "keys": [o.key for o in objects], "note": object_note}
    return _Frames(samples, scenes, edges, real_holes, reference, real_meshes, bins, objects, object_note)


def _instances(layout: DepthLayout | None, samples: SampleSet, cfg: Config) -> tuple[np.ndarray | None, str]:
    """(CAD instance ids [F, S, S] of the frame set, or None, why not): the layout's `<frame>_inst.png` cut
    to the frames by the evaluation transform (`data.dataset.eval_box` centre crop, nearest resize)."""
    from sim2real_kit.data.dataset import crop_resize, eval_box

    if layout is None:
        return None, "per-object 3D: no layout to read instance ids from"
    missing = [r for r in samples.refs if not layout.depth_path(r, "inst").is_file()]
    if missing:
        return None, (
            f"per-object 3D: skipped, the layout has no instance ids (<frame>_inst.png) for {len(missing)} of "
            f"{len(samples.refs)} frames, e.g. {_frame_list(missing, 2)}"
        )
    box = eval_box(layout.camera, cfg.data.eval_crop)
    size = int(samples.cad.shape[-1])
    ids = [crop_resize(layout.read_frame(r, instance=True)["instance"], box, size) for r in samples.refs]
    return np.stack(ids).astype(np.int64), ""


def _frozen_discriminator(path: Path):
    if not path.is_file():
        return None
    from sim2real_kit.models.discriminator import PointNetDiscriminator

    return PointNetDiscriminator.load(path)


def _score_simulators(sims, frames: _Frames, cfg, seed_list, fuse, disc_model, progress):
    """4. One row per simulator x seed (deterministic simulators: the first seed), the per-scene 3D values and
    each simulator's first fused scene."""
    from tqdm.auto import tqdm

    from sim2real_kit.metrics import stability_across_seeds

    rows: list[dict] = []
    per_scene: dict[str, dict] = {}
    first_meshes: dict[str, object] = {}
    first_outputs: dict[str, np.ndarray] = {}  # each simulator's first seed's depth (realism tests)
    jobs = [(n, sd) for n, sim in sims.items() for sd in (seed_list if sim.stochastic else seed_list[:1])]
    bar = tqdm(total=len(jobs), desc="benchmark", disable=not progress)
    for name, sim in sims.items():
        sim_seeds = seed_list if sim.stochastic else seed_list[:1]
        outputs, sim_rows, sim_notes = [], [], []
        for seed in sim_seeds:
            bar.set_postfix_str(f"{name} seed {seed}")
            try:
                depth = sim.run(frames.samples, seed)
            except MissingArtifactError as e:  # e.g. re-sampling without a pipeline: keep the seeds done
                if not outputs:
                    raise
                if str(e) not in sim_notes:
                    sim_notes.append(str(e))
                bar.update(1)
                continue
            depth = _check_output(name, depth, frames.samples)
            row, scene_vals, meshes = _score_one(name, sim, seed, depth, frames, cfg, fuse, disc_model)
            if fuse:
                per_scene.setdefault(name, {})[str(seed)] = scene_vals
                first = next(iter(frames.scenes))
                if seed == sim_seeds[0] and meshes.get(first) is not None:
                    first_meshes[name] = meshes[first]
            outputs.append(depth)
            first_outputs.setdefault(name, depth)
            sim_rows.append(row)
            bar.update(1)
        spread, spread_note = _seed_spread(outputs, sim.stochastic, stability_across_seeds)
        for i, row in enumerate(sim_rows):
            row["seed_spread_mm"] = spread if i == 0 else math.nan  # one number per simulator: on its first row
            row["note"] = "; ".join(filter(None, [row["note"], *sim_notes, spread_note]))
        rows += sim_rows
    bar.close()
    return rows, per_scene, first_meshes, first_outputs


def _score_one(name, sim, seed, depth, frames: _Frames, cfg, fuse, disc_model) -> tuple[dict, dict, dict]:
    """The row of one simulator x seed: depth realism, 3D realism, judged fake, view disagreement."""
    from sim2real_kit.flagging import share_judged_fake

    t0 = time.perf_counter()
    samples, bcfg = frames.samples, cfg.benchmark
    row: dict = {"simulator": name, "seed": seed, "frames": len(samples.refs)}
    notes = [sim.note] if sim.note else []
    metrics, n = depth_realism(
        depth,
        samples,
        frames.edges,
        frames.real_holes,
        max_diff_m=float(cfg.data.max_diff_m),
        bins=frames.bins,
    )
    row.update(metrics)
    notes += n
    scene_vals, meshes = {}, {}
    if fuse:
        same_as_real = np.array_equal(depth, samples.real)
        meshes, why = (frames.real_meshes, {}) if same_as_real else fuse_scenes(depth, samples, frames.scenes, bcfg)
        notes += [f"fusion of scene {sc}: {w}" for sc, w in why.items()]
        m3d, scene_vals, n = realism_3d(meshes, frames.real_meshes, bcfg, int(bcfg.num_points), frames.disco)
        row.update(m3d)
        notes += n
        mobj, obj_vals, n = object_realism(depth, samples, frames.objects, bcfg, int(bcfg.num_points))
        row.update(mobj)
        notes += n
        for key, vals in obj_vals.items():  # per-object values beside their scene's: per_scene_3d[scene]["objects"]
            scene, oid = key.rsplit("/", 1)
            scene_vals.setdefault(scene, {}).setdefault("objects", {})[oid] = vals
    else:
        row.update(_nan_metrics(KEYS_3D))  # fuse=False: 3D columns stay empty
        row.update({**_nan_metrics(OBJ_KEYS), "obj_count": 0})
    row["disc_fake_pct"] = math.nan
    if disc_model is not None:
        try:
            row["disc_fake_pct"] = 100 * share_judged_fake(disc_model, depth, samples, cfg)
        except Sim2RealError as e:
            notes.append(f"discriminator: {e}")
    row["view_mm"] = view_consistency_mm(depth, samples, frames.scenes, float(cfg.data.max_diff_m))
    row["view_gap_mm"] = abs(row["view_mm"] - frames.reference["real"]["view_mm"])
    row["seconds"] = time.perf_counter() - t0
    row["note"] = "; ".join(dict.fromkeys(notes))
    return row, scene_vals, meshes


def _write_outputs(
    run,
    cfg,
    out_dir,
    split,
    frames: _Frames,
    seed_list,
    names,
    sims,
    skipped,
    rows,
    per_scene,
    first_meshes,
    ds_rows,
    ds_note,
    disc_note,
    fuse,
    t_start,
    effects=None,
) -> BenchmarkResult:
    """6. The table (mean ± std per simulator), results.csv / .md, figures, meshes, summary.json."""
    samples, scenes, reference = frames.samples, frames.scenes, frames.reference
    metric_keys = _metric_keys(rows)
    order = list(dict.fromkeys([*names, *(r["simulator"] for r in rows)]))  # downstream may add "real"
    table = compare_table(sorted(rows, key=lambda r: order.index(r["simulator"])), metric_keys)
    columns = list(COLUMNS) + [c for c in DOWNSTREAM_COLUMNS if c.key in metric_keys]
    seconds = time.perf_counter() - t_start
    header = (
        f"Benchmark of run `{run.root.name}` ({run.root}): split {split}, {len(samples.refs)} frames in "
        f"{len(scenes)} scenes at {samples.cad.shape[-1]} px, seeds {seed_list} (deterministic simulators: "
        f"seed {seed_list[0]}); mean ± std over seeds; best in bold when its gap to the second best exceeds the "
        f"seeds' std of both (the `real` reference row excluded). "
        f"Real holes {frames.real_holes['all']:.1f} % (edges {frames.real_holes['edge']:.1f} %), real tail "
        f"(|CAD − real| >= {reference['max_diff_m']:g} m) {reference['real']['tail_pct']:.2f} %, real view "
        f"disagreement {reference['real']['view_mm']:.2f} mm, CAD {reference['cad']['view_mm']:.2f} mm; {disc_note}. "
        f"Residual W1 on the pixels valid in CAD, simulated and real with both |residual| < "
        f"{reference['max_diff_m']:g} m (binned: by distance to CAD depth edges, by CAD incidence); pooled W1: "
        f"each map over its own valid pixels, every magnitude (the release's). {_objects_line(frames)}"
    )
    labels = {n: (sims[n].label if n in sims else LABELS.get(n, n)) for n in order}
    paths: dict[str, Path] = {}
    rows.sort(key=lambda r: (order.index(r["simulator"]), -1 if r["seed"] is None else r["seed"]))
    paths["results.csv"] = write_csv(
        out_dir / "results.csv", rows, ["simulator", "seed", "frames", *metric_keys, "note"]
    )
    md = markdown_table(table, columns, header=header, labels=labels)
    if ds_rows:
        from sim2real_kit import downstream as ds

        md += "\nDownstream task (networks trained on each simulator's benchmark-split output, tested on real):\n\n"
        md += ds.summary_markdown(ds.summarize(ds_rows))
    if effects:
        md += "\n" + effects_markdown(effects, labels)
        if effects_heatmap(effects, labels, path=out_dir / "figures" / "effects.png") is not None:
            paths["figures/effects.png"] = out_dir / "figures" / "effects.png"
    atomic_write_text(out_dir / "results.md", md)
    paths["results.md"] = out_dir / "results.md"
    for metric, title in FIGURES:
        p = bar_chart(table, metric, title, out_dir / "figures" / f"{metric}.png")
        if p is not None:
            paths[f"figures/{metric}.png"] = p
    if fuse and first_meshes:
        paths.update(_save_meshes(first_meshes, table, next(iter(scenes)), out_dir / "meshes"))
    summary = _summary(
        run.root,
        cfg,
        split,
        samples,
        scenes,
        seed_list,
        names,
        sims,
        skipped,
        table,
        metric_keys,
        reference,
        per_scene,
        ds_rows,
        ds_note,
        columns,
        seconds,
        int(cfg.benchmark.num_points),
        disc_note,
    )
    summary["effect_reproduction"] = effects or {}
    atomic_write_json(out_dir / "summary.json", plain(summary, strict_json=True))
    paths["summary.json"] = out_dir / "summary.json"
    if ds_rows:
        paths["downstream.csv"] = write_csv(out_dir / "downstream.csv", ds_rows)
    run.record_step("benchmark", cfg, split=split, seeds=seed_list)
    return BenchmarkResult(out_dir, rows, table, summary, paths, seconds)


# ====================================================================== steps of evaluate_run
def _objects_line(frames: _Frames) -> str:
    """The header's sentence on the per-object 3D columns: how many objects, or why there are none."""
    if frames.objects:
        scenes = len({o.scene for o in frames.objects})
        line = (
            f"Per-object 3D (obj_*): DisCo metrics of {len(frames.objects)} objects in {scenes} scenes (CAD "
            f"instance ids; points of each object's CAD pixels, normalised by the object's CAD points), mean over objects"
        )
        return line + (f" ({frames.object_note})." if frames.object_note else ".")
    return (frames.object_note or "per-object 3D: no object") + "."


def _check_output(name: str, depth, samples: SampleSet) -> np.ndarray:
    """The simulator's output as float32 [F, S, S]; other frame counts or sizes are an error naming it."""
    from sim2real_kit.depth import check_depth

    arr = depth.detach().cpu().numpy() if isinstance(depth, torch.Tensor) else np.asarray(depth)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != samples.cad.shape:
        if arr.ndim == 3 and arr.shape[1:] == samples.cad.shape[1:] and arr.shape[0] < len(samples.refs):
            missing = samples.refs[arr.shape[0] :]
            raise Sim2RealError(
                f"simulator {name!r} returned {arr.shape[0]} frames for {len(samples.refs)}: it misses "
                f"{_frame_list(missing)} (or others)"
            )
        raise Sim2RealError(f"simulator {name!r} returned depth of shape {arr.shape}, expected {samples.cad.shape}")
    check_depth(arr, f"output of simulator {name!r}")
    return arr.astype(np.float32, copy=False)


def _seed_spread(outputs: list, stochastic: bool, stability_fn) -> tuple[float, str]:
    if not stochastic:
        return 0.0, ""
    if len(outputs) < 2:
        return math.nan, "seed spread needs >= 2 seeds"
    try:
        return 1000 * stability_fn(np.stack(outputs)), ""
    except Sim2RealError as e:
        return math.nan, f"seed spread: {e}"


def _downstream_rows(sims, layout, cfg, split, seeds, steps, progress) -> tuple[list[dict], str]:
    try:
        import sim2real_kit.downstream  # noqa: F401
    except ImportError as e:  # pragma: no cover - the module is part of the kit
        return [], f"downstream module unavailable ({e})"
    try:
        rows, skipped = run_benchmark_downstream(sims, layout, cfg, split, seeds, steps, progress)
    except Sim2RealError as e:
        return [], f"not run: {e}"
    bench = layout.frames(DOWNSTREAM_SPLIT)
    what = (
        f"trained on each simulator's output of the {DOWNSTREAM_SPLIT} split ({len(bench)} frames of "
        f"{len({r.scene for r in bench})} scenes no simulator trained on), tested on real captures of {split}"
    )
    return rows, "; ".join([what, *(f"{k}: {v}" for k, v in skipped.items())])


def _merge_downstream(rows: list[dict], ds_rows: Sequence[Mapping], frames: int) -> list[dict]:
    """Downstream metrics into the (simulator, seed) rows; seeds a simulator has no row for get one."""
    index = {(r["simulator"], r["seed"]): r for r in rows}
    for d in ds_rows:
        key = (d["simulator"], d["seed"])
        if key not in index:
            index[key] = {"simulator": d["simulator"], "seed": d["seed"], "frames": frames, "note": ""}
            rows.append(index[key])
        index[key].update(_downstream_columns(d))
    return rows


def _metric_keys(rows: Sequence[Mapping]) -> list[str]:
    skip = {"simulator", "seed", "frames", "note"}
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in skip and k not in keys]
    return keys


def _save_meshes(first_meshes: Mapping, table: Sequence[Mapping], scene: str, folder: Path) -> dict[str, Path]:
    """real, cad and the stage with the lowest mean CD-L2 (first scene, first seed)."""
    from sim2real_kit.fusion import save_mesh

    stage_rows = [e for e in table if str(e["simulator"]).startswith("stage") and e["simulator"] in first_meshes]
    finite = [e for e in stage_rows if _finite([e.get("cd_l2_x1000")])]
    best = min(finite, key=lambda e: e["cd_l2_x1000"])["simulator"] if finite else None
    best = best or (stage_rows[-1]["simulator"] if stage_rows else None)
    paths = {}
    for name in ("real", "cad", best):
        if name and name in first_meshes:
            path = folder / f"{scene}_{name}.ply"
            paths[f"meshes/{path.name}"] = save_mesh(first_meshes[name], path)
    return paths


def _summary(
    run_dir,
    cfg,
    split,
    samples,
    scenes,
    seed_list,
    names,
    sims,
    skipped,
    table,
    metric_keys,
    reference,
    per_scene,
    ds_rows,
    ds_note,
    columns,
    seconds,
    num_points,
    disc_note,
) -> dict:
    sims_out = {}
    for entry in table:
        name = entry["simulator"]
        sim = sims.get(name)
        sims_out[name] = {
            "label": sim.label if sim else LABELS.get(name, name),
            "available": name not in skipped,
            "stochastic": bool(sim.stochastic) if sim else None,
            "seeds": max([entry.get(f"{k}_n", 0) for k in metric_keys] + [0]),
            "note": entry.get("note", ""),
            **{k: {"mean": entry[k], "std": entry[f"{k}_std"], "n": entry[f"{k}_n"]} for k in metric_keys},
        }
    best, bold = {}, {}
    for c in columns:
        names_bold, no_spread = best_entries(table, c, "simulator", (REFERENCE,))
        if names_bold:
            bold[c.key] = {"simulators": names_bold, "spread_tested": not no_spread}
        value = _best(table, c, "simulator", (REFERENCE,))
        if value is not None:
            best[c.key] = [
                e["simulator"]
                for e in table
                if _finite([e.get(c.key)])
                and round(e[c.key], c.digits) == round(value, c.digits)
                and e["simulator"] != REFERENCE
            ]
    out = {
        "run": str(run_dir),
        "run_name": Path(run_dir).name,
        "split": split,
        "frames": len(samples.refs),
        "scenes": list(scenes),
        "size": int(samples.cad.shape[-1]),
        "seeds": seed_list,
        "simulators": sims_out,
        "skipped": skipped,
        "reference": reference,
        "best": best,
        "best_bold": bold,  # the markdown table's bold: best only when out of the seeds' spread (tables.best_entries)
        "per_scene_3d": per_scene,
        "downstream": {"note": ds_note},
        "discriminator": disc_note,
        "benchmark_config": dataclasses.asdict(cfg.benchmark),
        "num_points": num_points,
        "seconds": seconds,
    }
    if ds_rows:
        from sim2real_kit import downstream as ds

        out["downstream"]["summary"] = ds.summarize(ds_rows)
    return out
