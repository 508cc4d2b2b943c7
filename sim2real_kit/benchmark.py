"""The benchmark: every simulator of a run in one table (DESIGN §5; the paper's Table 4 analog of
Sec. 4.4, the discriminator accuracy of Sec. 4.5 and the downstream Tables 1-3 analogs).

On one split (validation by default) of a run folder, each simulator turns the CAD frames of the
run's samples (model size, metres) into simulated captures, seed by seed, and is scored against
the real captures of the same views:

1. depth realism: AbsRel, RMSE, δ1 of simulated vs real depth, Wasserstein-1 of the residual
   distributions (CAD − simulated vs CAD − real, mm), hole rates (all / at CAD edges / flat) next to
   the real ones and their absolute gap, residuals at edges vs flat areas;
2. 3D realism: each scene's frames fused by TSDF (`fusion.fuse_frames`, model-frame camera, the
   frames' poses) and compared with the fused real capture of that scene by the DisCo metrics
   (`metrics.disco_metrics`, normalised per scene): mIoU %, CD-L2 ×1000, F-score %;
3. the share of the simulator's patches that the frozen Stage-I discriminator judges fake (%);
4. the downstream task (`downstream.run_downstream`): networks trained on the simulator's output of
   the train split, tested on real captures of the split;
5. stability: spread of the output over seeds (mean per-pixel std, mm) and disagreement of
   consecutive views of a scene (`metrics.view_consistency`, mm), next to the same on real and CAD.

Simulators (`SIMULATORS`): `cad` (w/o sim), `random` (Gaussian + dropout), `physical` (a textbook
Kinect noise model, `data.sensor.GenericSensor`, on CAD depth with incidence from CAD normals),
`pix2pix`, `cyclegan` (`models.baselines`, trained into `run_dir/baselines/<kind>/`), `direct` (a
pipeline trained with `model.target=direct` in `run_dir/direct/`), `stage1`..`stage3` (the run's
saved samples, re-sampled for seeds > 0) and `real` (the reference row: the ceiling, W1 0, CD 0).
A simulator whose artifacts are missing gets a row saying why; frames sets that differ between
stages are an error naming the frames.

Outputs in `out` (default `run_dir/benchmark/`, all written atomically): `results.csv` (one row per
simulator × seed), `results.md` (one table, mean ± std over seeds, best per column in bold),
`summary.json` (nested: what notebook 05 writes into its metrics.json), `figures/*.png` bar charts
and `meshes/<scene>_<sim>.ply` (first scene: real, cad and the best stage). open3d is used only
through `fusion` (imported when `fuse=True`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from sim2real_kit.camera import Camera
from sim2real_kit.config import Config
from sim2real_kit.data.layout import DepthLayout, FrameRef
from sim2real_kit.errors import ConfigError, DepthFormatError, MissingArtifactError, Sim2RealError
from sim2real_kit.io import atomic_path, atomic_write_json, atomic_write_text
from sim2real_kit.stages import SampleSet, patch_pixel_mask

SIMULATORS = ("cad", "random", "physical", "pix2pix", "cyclegan", "direct", "stage1", "stage2", "stage3", "real")
LABELS = {
    "cad": "CAD (w/o sim)",
    "random": "random noise",
    "physical": "physical model",
    "pix2pix": "Pix2Pix",
    "cyclegan": "CycleGAN",
    "direct": "direct diffusion (w/o res)",
    "stage1": "Stage-I",
    "stage2": "Stage-II",
    "stage3": "Stage-III",
    "real": "real (reference)",
}
REFERENCE = "real"  # the reference row: excluded from "best" in the tables
RANDOM_SIGMA_M = 0.01  # random baseline: Gaussian std (1 cm, DisCo-style perturbation)
RANDOM_DROPOUT = 0.05  # random baseline: share of valid pixels dropped
PHYSICAL_MODEL = "nguyen2012"  # GenericSensor model of the physical baseline (published Kinect constants)
DISC_SEED_OFFSET = 7  # patch-point subsampling seed = cfg.seed + 7 (as train_and_flag scores its val patches)
QUICK_POINTS = 20_000  # quick=True: DisCo points per side
QUICK_SEEDS = 2  # quick=True: at most this many seeds
QUICK_STEPS = 30  # quick=True: downstream / baseline training steps


# ====================================================================== simulators
@dataclass
class Simulator:
    """A simulator of the benchmark: `run(samples, seed)` -> simulated depth [F, S, S] metres for the
    CAD frames `samples.cad` (model size, `samples.camera`), 0 = hole.

    stochastic: False when every seed gives the same output (evaluated with one seed, spread 0).
    from_cad: optional `(cad [F, H, W] metres, camera, seed) -> depth` for any CAD frames (CAD-driven
    simulators; the downstream task runs it on the train split). train_samples: optional folder of
    `<scene>/<frame>_<train_key>.png` holding its output on the train split (sample-driven simulators)."""

    name: str
    run: Callable[[SampleSet, int], np.ndarray]
    stochastic: bool = True
    label: str = ""
    from_cad: Callable[[np.ndarray, Camera, int], np.ndarray] | None = None
    train_samples: Path | None = None
    train_key: str = ""
    note: str = ""

    def __post_init__(self):
        self.label = self.label or LABELS.get(self.name, self.name)


def cad_normals(cad, camera: Camera) -> np.ndarray:
    """Camera-frame unit normals [H, W, 3] of a CAD depth frame [H, W] (metres) from finite differences
    of its back-projected points. Per axis the one-sided difference with the smaller depth step is
    used, so a depth discontinuity does not tilt the normals beside it; pixels without a valid
    neighbour on either axis (and cad = 0) get 0."""
    depth = np.asarray(cad, dtype=np.float64)
    if depth.ndim != 2:
        raise DepthFormatError(f"cad_normals takes one frame [H, W], got shape {depth.shape}")
    pts = camera.backproject(depth)  # [H, W, 3]
    valid = depth > 0
    du = _one_sided_diff(pts, valid, axis=1)
    dv = _one_sided_diff(pts, valid, axis=0)
    normals = np.cross(du, dv)
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    ok = valid[..., None] & (norm > 0)
    return np.where(ok, normals / np.maximum(norm, 1e-12), 0.0).astype(np.float32)


def _one_sided_diff(pts: np.ndarray, valid: np.ndarray, axis: int) -> np.ndarray:
    """[H, W, 3] neighbour difference along `axis`: forward or backward, whichever has the smaller |dz|."""

    def sl(a, b):
        return tuple(slice(a, b) if ax == axis else slice(None) for ax in range(2))

    fwd, bwd = np.zeros_like(pts), np.zeros_like(pts)
    fwd_ok, bwd_ok = np.zeros(valid.shape, bool), np.zeros(valid.shape, bool)
    fwd[sl(None, -1)] = pts[sl(1, None)] - pts[sl(None, -1)]
    fwd_ok[sl(None, -1)] = valid[sl(1, None)] & valid[sl(None, -1)]
    bwd[sl(1, None)] = fwd[sl(None, -1)]
    bwd_ok[sl(1, None)] = fwd_ok[sl(None, -1)]
    use_fwd = fwd_ok & (~bwd_ok | (np.abs(fwd[..., 2]) <= np.abs(bwd[..., 2])))
    return np.where(use_fwd[..., None], fwd, np.where(bwd_ok[..., None], bwd, 0.0))


def cad_incidence(cad, camera: Camera) -> np.ndarray:
    """Incidence angle [H, W] radians between the viewing ray and the CAD surface normal (0 where
    the normal is undefined)."""
    normals = cad_normals(cad, camera)
    rays = camera.pixel_rays(np.float64)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    cos = np.abs(np.einsum("hwc,hwc->hw", normals.astype(np.float64), rays))
    return np.where(np.abs(normals).sum(-1) > 0, np.arccos(np.clip(cos, 0.0, 1.0)), 0.0).astype(np.float32)


def _random_from_cad(cad: np.ndarray, camera: Camera, seed: int) -> np.ndarray:
    from sim2real_kit.models.baselines import RandomPerturbation

    sim = RandomPerturbation(sigma_m=RANDOM_SIGMA_M, dropout=RANDOM_DROPOUT, seed=seed)
    return sim.simulate(np.asarray(cad, np.float32), generator=int(seed))


def _physical_from_cad(cad: np.ndarray, camera: Camera, seed: int, model: str = PHYSICAL_MODEL) -> np.ndarray:
    from sim2real_kit.data.sensor import GenericSensor

    sensor = GenericSensor(model)
    rng = np.random.default_rng(int(seed))
    frames = np.asarray(cad, np.float32).reshape(-1, *np.shape(cad)[-2:])
    out = [sensor.capture(f, incidence=cad_incidence(f, camera), camera=camera, rng=rng) for f in frames]
    return np.stack(out).reshape(np.shape(cad))


def _cad_driven(name: str, fn, stochastic: bool) -> Simulator:
    return Simulator(name, run=lambda s, seed: fn(s.cad, s.camera, seed), stochastic=stochastic, from_cad=fn)


def _baseline_dir(run_dir, kind: str) -> Path:
    return Path(run_dir) / "baselines" / kind


def _direct_dir(run_dir) -> Path:
    return Path(run_dir) / "direct"


def _stage_of(name: str) -> int | None:
    return int(name[5:]) if name.startswith("stage") and name[5:].isdigit() else None


def _samples_meta(run_dir, stage: int, split: str) -> Path:
    from sim2real_kit.stages import samples_dir

    return samples_dir(run_dir, stage, split) / "samples.json"


def available_simulators(run_dir, cfg: Config | None = None, split: str = "val") -> dict[str, str | None]:
    """{name: None when the run can evaluate it, else why not} for every name of `SIMULATORS`."""
    from sim2real_kit.stages import stage_dir

    run_dir = Path(run_dir)
    out: dict[str, str | None] = {"cad": None, "random": None, "physical": None, "real": None}
    for kind in ("pix2pix", "cyclegan"):
        d = _baseline_dir(run_dir, kind)
        out[kind] = None if (d / "baseline.json").is_file() else (
            f"no trained {kind} baseline in {d} (evaluate_run(..., train_baselines=True) trains it)"
        )  # fmt: skip
    direct = _direct_dir(run_dir) / "stage1" / "pipeline" / "model_index.json"
    has_direct = direct.is_file() or _samples_meta(_direct_dir(run_dir), 1, split).is_file()
    out["direct"] = None if has_direct else (
        f"no direct-target pipeline at {direct.parent} (train Stage-I with model.target=direct into {direct.parents[2]})"
    )  # fmt: skip
    for k in (1, 2, 3):
        meta = _samples_meta(run_dir, k, split)
        out[f"stage{k}"] = None if meta.is_file() else (
            f"no Stage-{k} samples of split {split!r} ({meta.parent}); make them with: "
            f"sim2real sample --run {run_dir} --split {split} --stages {k}"
            + ("" if (stage_dir(run_dir, k) / "pipeline").is_dir() else f" (after training Stage-{k})")
        )  # fmt: skip
    return {name: out[name] for name in SIMULATORS}


def make_simulator(
    name: str,
    run_dir,
    cfg: Config,
    split: str = "val",
    *,
    stage_samples: Mapping[int, SampleSet] | None = None,
    train_baselines: bool = False,
    baseline_steps: int | None = None,
    progress: bool = False,
) -> Simulator:
    """The simulator `name` of a run (see `SIMULATORS`). `stage_samples`: {k: SampleSet of stage k} already
    loaded (else read here). Missing artifacts raise MissingArtifactError saying how to make them;
    `train_baselines=True` trains a missing pix2pix / CycleGAN on the train split first."""
    run_dir = Path(run_dir)
    if name not in SIMULATORS:
        raise ConfigError(f"unknown simulator {name!r}; valid: {', '.join(SIMULATORS)}")
    if name == "cad":
        return _cad_driven("cad", lambda cad, cam, seed: np.array(cad, np.float32, copy=True), stochastic=False)
    if name == "real":
        return Simulator("real", run=lambda s, seed: s.real.copy(), stochastic=False)
    if name == "random":
        return _cad_driven("random", _random_from_cad, stochastic=True)
    if name == "physical":
        model = cfg.benchmark.physical_model
        sim = _cad_driven("physical", lambda c, cam, s: _physical_from_cad(c, cam, s, model), stochastic=True)
        sim.label = f"physical ({model})"
        return sim
    if name in ("pix2pix", "cyclegan"):
        return _baseline_simulator(name, run_dir, cfg, train_baselines, baseline_steps, progress)
    if name == "direct":
        reason = available_simulators(run_dir, cfg, split)["direct"]
        if reason is not None:
            raise MissingArtifactError(reason)
        return _pipeline_simulator("direct", _direct_dir(run_dir), 1, cfg, split, "sim1", layout=_layout(run_dir, cfg))
    stage = _stage_of(name)
    reason = available_simulators(run_dir, cfg, split)[name]
    if reason is not None:
        raise MissingArtifactError(reason)
    saved = (stage_samples or {}).get(stage)
    return _pipeline_simulator(
        name, run_dir, stage, cfg, split, f"sim{stage}", layout=_layout(run_dir, cfg), saved=saved
    )


def _baseline_simulator(kind, run_dir, cfg, train, steps, progress) -> Simulator:
    from sim2real_kit.models.baselines import BaselineSimulator, train_baseline

    folder = _baseline_dir(run_dir, kind)
    if not (folder / "baseline.json").is_file():
        if not train:
            raise MissingArtifactError(available_simulators(run_dir, cfg)[kind])
        from sim2real_kit.data.dataset import PairedDepthDataset

        train_ds = PairedDepthDataset.from_config(cfg, _layout(run_dir, cfg), "train", train=True)
        train_baseline(kind, train_ds, folder, cfg, steps=steps, resume=True, progress=progress)
    sim = BaselineSimulator.load(folder, device="cuda" if torch.cuda.is_available() else "cpu")

    def from_cad(cad, camera, seed):
        return sim.simulate(np.asarray(cad, np.float32))

    return Simulator(kind, run=lambda s, seed: from_cad(s.cad, s.camera, seed), stochastic=False, from_cad=from_cad)


def _pipeline_simulator(
    name, run_dir, stage, cfg, split, samples_key, layout: DepthLayout, saved: SampleSet | None = None
) -> Simulator:
    """A diffusion chain as a simulator: seed 0 = the saved samples (when there are), other seeds
    re-sampled with `torch.Generator().manual_seed(seed)`."""
    from sim2real_kit.stages import load_pipeline, samples_dir, stage_dir

    run_dir = Path(run_dir)
    if saved is None and _samples_meta(run_dir, stage, split).is_file():
        saved = _load_stage_samples(run_dir, stage, split, layout)
    has_pipeline = (stage_dir(run_dir, stage) / "pipeline" / "model_index.json").is_file()
    if saved is None and not has_pipeline:
        raise MissingArtifactError(f"{name}: neither samples nor a pipeline in {stage_dir(run_dir, stage)}")
    cache: dict = {}

    def run(samples: SampleSet, seed: int) -> np.ndarray:
        if seed == 0 and saved is not None:
            _check_same_input(saved, samples, f"{name} {split} samples", "the benchmark frames")
            return saved.sims[stage]
        if not has_pipeline:
            raise MissingArtifactError(
                f"only the saved sample: seed {seed} needs the pipeline {stage_dir(run_dir, stage) / 'pipeline'}"
            )
        if "pipe" not in cache:
            cache["pipe"] = load_pipeline(run_dir, stage, cfg)  # the run's sampling settings
        gen = torch.Generator().manual_seed(int(seed))
        out = cache["pipe"](samples.cad, camera=samples.camera, generator=gen)
        depth = out.depth.detach().cpu().numpy() if isinstance(out.depth, torch.Tensor) else np.asarray(out.depth)
        return depth.astype(np.float32)

    train_dir = samples_dir(run_dir, stage, "train")
    return Simulator(
        name, run=run, stochastic=True,
        train_samples=train_dir if (train_dir / "samples.json").is_file() else None, train_key=samples_key,
    )  # fmt: skip


# ====================================================================== samples and frame sets
def _dataset_root_of(run_dir, cfg: Config) -> Path:
    from sim2real_kit.stages import dataset_root

    return dataset_root(run_dir, cfg)


def _layout(run_dir, cfg: Config) -> DepthLayout:
    return DepthLayout(_dataset_root_of(run_dir, cfg))


def _load_stage_samples(run_dir, stage: int, split: str, layout: DepthLayout) -> SampleSet:
    """`stages.load_samples`, after checking that samples.json says the same split."""
    from sim2real_kit.stages import load_samples

    meta_path = _samples_meta(run_dir, stage, split)
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise Sim2RealError(f"cannot read samples description: {e}", meta_path) from None
        if meta.get("split", split) != split:
            raise Sim2RealError(
                f"samples of split {meta.get('split')!r} found where split {split!r} belongs", meta_path
            )
    samples = load_samples(run_dir, stage, split, layout)
    if not samples.refs:
        raise MissingArtifactError(f"no Stage-{stage} sample of split {split!r} matches the layout's {split}.lst")
    return samples


def _frame_list(refs: Sequence[FrameRef], limit: int = 5) -> str:
    names = [str(r) for r in refs]
    return ", ".join(names[:limit]) + (", …" if len(names) > limit else "")


def _check_same_frames(refs: Sequence[FrameRef], base: Sequence[FrameRef], name: str, base_name: str) -> None:
    """Raise Sim2RealError naming the frames when two frame lists differ (as sets or in order)."""
    have, want = set(refs), set(base)
    lacking = [r for r in base if r not in have]
    extra = [r for r in refs if r not in want]
    if lacking:
        raise Sim2RealError(f"{name} lack {len(lacking)} frames of {base_name}: {_frame_list(lacking)}")
    if extra:
        raise Sim2RealError(f"{name} hold {len(extra)} frames {base_name} lack: {_frame_list(extra)}")
    if list(refs) != list(base):
        raise Sim2RealError(f"{name} list the frames of {base_name} in another order")


def _check_same_input(other: SampleSet, base: SampleSet, name: str, base_name: str) -> None:
    _check_same_frames(other.refs, base.refs, name, base_name)
    if other.cad.shape != base.cad.shape:
        raise Sim2RealError(f"{name} are {other.cad.shape[-1]} px frames but {base_name} are {base.cad.shape[-1]} px")
    diff = float(np.abs(other.cad - base.cad).max()) if other.cad.size else 0.0
    if diff > 0.002:  # 2 mm: more than PNG rounding; another crop, size or dataset
        raise Sim2RealError(f"{name} were made from other CAD frames than {base_name} (max difference {diff:.3f} m)")


def _dataset_samples(run_dir, cfg: Config, split: str, layout: DepthLayout) -> SampleSet:
    """A SampleSet of the split straight from the dataset (eval crop at the model size), when the run
    holds no samples yet (only CAD-driven simulators can then be evaluated)."""
    from sim2real_kit.data.dataset import PairedDepthDataset

    ds = PairedDepthDataset.from_config(cfg, layout, split, train=False)
    items = [ds[i] for i in range(len(ds))]
    cam = Camera(*[float(v) for v in items[0]["camera"]], cfg.data.size, cfg.data.size)
    return SampleSet(
        refs=list(ds.refs),
        cad=np.stack([it["cad"][0].numpy() for it in items]),
        real=np.stack([it["real"][0].numpy() for it in items]),
        sims={},
        camera=cam,
        poses=np.stack([it["pose"].numpy().astype(np.float64) for it in items]),
    )


def benchmark_samples(run_dir, cfg: Config, split: str, stages: Sequence[int], layout: DepthLayout):
    """(base SampleSet, {k: SampleSet}) of the stages to evaluate, checked to share one frame set and one
    CAD input. The base is the lowest evaluated stage (else the lowest stage with samples, else the
    dataset's eval crops)."""
    loaded = {k: _load_stage_samples(run_dir, k, split, layout) for k in sorted(set(stages))}
    if loaded:
        base_k = min(loaded)
        base = loaded[base_k]
        for k, s in loaded.items():
            if k != base_k:
                _check_same_input(s, base, f"stage{k} {split} samples", f"stage{base_k}")
        return base, loaded
    for k in (1, 2, 3):
        if _samples_meta(run_dir, k, split).is_file():
            return _load_stage_samples(run_dir, k, split, layout), loaded
    return _dataset_samples(run_dir, cfg, split, layout), loaded


def _scenes(refs: Sequence[FrameRef]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, r in enumerate(refs):
        out.setdefault(r.scene, []).append(i)
    return out


# ====================================================================== per-seed metrics
def _nan_metrics(keys: Sequence[str]) -> dict[str, float]:
    return {k: math.nan for k in keys}


DEPTH_KEYS = ("abs_rel", "rmse_mm", "delta1_pct")
HOLE_KEYS = ("hole_all_pct", "hole_edge_pct", "hole_flat_pct")
EDGE_KEYS = ("edge_mae_mm", "flat_mae_mm", "edge_std_mm", "flat_std_mm")
KEYS_3D = ("miou_pct", "cd_l2_x1000", "fscore_pct")


def depth_realism(sim, samples: SampleSet, edges: np.ndarray, real_holes: Mapping[str, float]) -> tuple[dict, list]:
    """Depth-level metrics of simulated frames [F, S, S] against the real ones: (metrics, notes)."""
    from sim2real_kit.metrics import depth_metrics, hole_rates, masked_edge_stats, residual_w1

    out, notes = {}, []
    try:
        m = depth_metrics(sim, samples.real)
        out.update(abs_rel=m["abs_rel"], rmse_mm=1000 * m["rmse"], delta1_pct=100 * m["delta1"])
    except Sim2RealError as e:
        out.update(_nan_metrics(DEPTH_KEYS))
        notes.append(f"depth metrics: {e}")
    try:
        out["w1_mm"] = 1000 * residual_w1(samples.cad, sim, samples.real)
    except Sim2RealError as e:
        out["w1_mm"] = math.nan
        notes.append(f"W1: {e}")
    holes = hole_rates(samples.cad, sim, edge_mask=edges)
    for region in ("all", "edge", "flat"):
        out[f"hole_{region}_pct"] = 100 * holes[region]
        out[f"hole_{region}_gap_pct"] = abs(100 * holes[region] - real_holes[region])
    out["hole_gap_pct"] = out.pop("hole_all_gap_pct")
    stats = masked_edge_stats(samples.cad, sim, edge_mask=edges)
    out.update(
        edge_mae_mm=1000 * stats["edge_mean_abs"], flat_mae_mm=1000 * stats["flat_mean_abs"],
        edge_std_mm=1000 * stats["edge_std"], flat_std_mm=1000 * stats["flat_std"],
    )  # fmt: skip
    return out, notes


def fuse_scenes(depth, samples: SampleSet, scenes: Mapping[str, list[int]], bcfg) -> tuple[dict, dict]:
    """TSDF-fuse each scene's frames of `depth` [F, S, S]: ({scene: mesh or None}, {scene: why None})."""
    from sim2real_kit.fusion import fuse_frames

    meshes, why = {}, {}
    for scene, idx in scenes.items():
        try:
            meshes[scene] = fuse_frames(
                [depth[i] for i in idx], samples.poses[idx], samples.camera, voxel_m=bcfg.voxel_m,
                trunc_m=bcfg.trunc_m, depth_trunc_m=bcfg.depth_trunc_m, progress=False,
            )  # fmt: skip
        except Sim2RealError as e:
            meshes[scene], why[scene] = None, str(e)
    return meshes, why


def realism_3d(meshes: Mapping, real_meshes: Mapping, bcfg, num_points: int) -> tuple[dict, dict, list]:
    """DisCo metrics of each scene's fused simulator mesh against the fused real one, normalised per
    scene: (means over scenes {miou_pct, cd_l2_x1000, fscore_pct}, per-scene values, notes). NaN (with
    a note) when any scene has no mesh on either side, so every simulator is scored on the same scenes."""
    from sim2real_kit.metrics import disco_metrics

    per_scene, notes = {}, []
    for scene, mesh in meshes.items():
        ref = real_meshes.get(scene)
        if mesh is None or ref is None:
            per_scene[scene] = _nan_metrics(KEYS_3D)
            notes.append(f"3D: scene {scene} has no fused {'surface' if mesh is None else 'real surface'}")
            continue
        try:
            m = disco_metrics(
                mesh, ref, num_points=num_points, fscore_threshold=bcfg.fscore_threshold, seed=0,
                occupancy=bcfg.iou_occupancy, shell_width=bcfg.shell_width,
            )  # fmt: skip
            per_scene[scene] = {
                "miou_pct": 100 * m["iou"],
                "cd_l2_x1000": m["cd_l2_x1000"],
                "fscore_pct": 100 * m["fscore"],
            }
        except Sim2RealError as e:
            per_scene[scene] = _nan_metrics(KEYS_3D)
            notes.append(f"3D: scene {scene}: {e}")
    if notes or not per_scene:
        return _nan_metrics(KEYS_3D), per_scene, notes
    means = {k: float(np.mean([v[k] for v in per_scene.values()])) for k in KEYS_3D}
    return means, per_scene, notes


def view_consistency_mm(depth, samples: SampleSet, scenes: Mapping[str, list[int]], max_diff_m=None) -> float:
    """Mean over consecutive frame pairs of each scene of `metrics.view_consistency` (median |reprojected
    z − z|), in mm; NaN when no pair overlaps."""
    from sim2real_kit.metrics import view_consistency

    values = []
    for idx in scenes.values():
        for a, b in zip(idx[:-1], idx[1:]):
            try:
                values.append(
                    view_consistency(depth[a], depth[b], samples.camera, samples.poses[a], samples.poses[b], max_diff_m)
                )
            except Sim2RealError:
                continue
    return 1000 * float(np.mean(values)) if values else math.nan


def _disc_settings(model, cfg: Config):
    """Patch extraction settings the discriminator was trained with (its meta), else the run's cfg.disc."""
    meta = getattr(model, "meta", {}) or {}
    d = cfg.disc
    return SimpleNamespace(
        patch_size=int(meta.get("patch_size") or d.patch_size), stride=int(meta.get("stride") or d.stride),
        num_points=int(meta.get("num_points") or d.num_points), min_valid=int(meta.get("min_valid") or d.min_valid),
        normalize=str(meta.get("normalize") or d.normalize),
    )  # fmt: skip


def discriminator_share_fake(model, depth, samples: SampleSet, cfg: Config) -> float:
    """Share (%) of the valid patches of `depth` [F, S, S] the frozen discriminator judges fake
    (P(real) < cfg.disc.threshold); lower = more realistic. Patches are made of the pixels the
    discriminator was trained on (`stages.patch_pixel_mask`)."""
    from sim2real_kit.models.discriminator import discriminator_accuracy, score_frames

    gen = torch.Generator().manual_seed(cfg.seed + DISC_SEED_OFFSET)
    scores, valid, _ = score_frames(
        model, torch.from_numpy(np.ascontiguousarray(depth, np.float32)), torch.from_numpy(samples.cad),
        samples.camera, _disc_settings(model, cfg), generator=gen, valid_mask=patch_pixel_mask(samples, cfg),
    )  # fmt: skip
    return 100 * discriminator_accuracy(scores, valid, cfg.disc.threshold)


# ====================================================================== tables
def _finite(values) -> list[float]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            continue
        if math.isfinite(float(v)):
            out.append(float(v))
    return out


def compare_table(rows: Sequence[Mapping], metrics: Sequence[str], group_key: str = "simulator") -> list[dict]:
    """Mean ± std of `metrics` over the rows of each group (groups in order of first appearance).

    Returns one dict per group: {group_key, "n" (rows), "note" (distinct non-empty notes joined by "; "),
    and per metric m: m (mean of the finite values, NaN if none), f"{m}_std" (sample std, 0 for one
    value), f"{m}_n" (finite values counted)}."""
    groups: dict = {}
    for row in rows:
        groups.setdefault(row.get(group_key), []).append(row)
    table = []
    for key, members in groups.items():
        entry: dict = {group_key: key, "n": len(members)}
        notes = []
        for r in members:
            for part in str(r.get("note") or "").split("; "):
                if part and part not in notes:
                    notes.append(part)
        entry["note"] = "; ".join(notes)
        for m in metrics:
            vals = _finite(r.get(m) for r in members)
            entry[m] = float(np.mean(vals)) if vals else math.nan
            entry[f"{m}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
            entry[f"{m}_n"] = len(vals)
        table.append(entry)
    return table


@dataclass(frozen=True)
class Column:
    """One column of `markdown_table`: metric key, header label, which way is better ("lower",
    "higher" or None: no bold) and decimals."""

    key: str
    label: str
    better: str | None = None
    digits: int = 2


# The benchmark table: metric groups (depth | holes | 3D | discriminator | stability | downstream) as columns.
COLUMNS = (
    Column("abs_rel", "depth AbsRel ↓", "lower", 4),
    Column("rmse_mm", "depth RMSE mm ↓", "lower", 1),
    Column("delta1_pct", "depth δ1 % ↑", "higher", 1),
    Column("w1_mm", "residual W1 mm ↓", "lower", 2),
    Column("hole_all_pct", "holes %", None, 1),
    Column("hole_gap_pct", "hole gap pp ↓", "lower", 1),
    Column("hole_edge_gap_pct", "edge-hole gap pp ↓", "lower", 1),
    Column("edge_mae_mm", "edge residual mm", None, 1),
    Column("miou_pct", "3D mIoU % ↑", "higher", 1),
    Column("cd_l2_x1000", "3D CD-L2 ×1000 ↓", "lower", 3),
    Column("fscore_pct", "3D F % ↑", "higher", 1),
    Column("disc_fake_pct", "D judged fake % ↓", "lower", 1),
    Column("seed_spread_mm", "seed spread mm", None, 2),
    Column("view_mm", "view disagreement mm", None, 2),
    Column("view_gap_mm", "view gap mm ↓", "lower", 2),
)
DOWNSTREAM_COLUMNS = (
    Column("ds_cls_acc_pct", "down. cls acc % ↑", "higher", 1),
    Column("ds_rec_iou_pct", "down. rec IoU % ↑", "higher", 1),
    Column("ds_rec_cd_l2_x1000", "down. rec CD ↓", "lower", 2),
)
FIGURES = (
    ("w1_mm", "Residual W1 (mm, lower is better)"),
    ("hole_gap_pct", "Hole-rate gap to real (percentage points, lower is better)"),
    ("cd_l2_x1000", "CD-L2 ×1000 vs fused real (lower is better)"),
    ("fscore_pct", "F-score % vs fused real (higher is better)"),
    ("disc_fake_pct", "Patches judged fake by the Stage-I discriminator (%, lower is better)"),
)


def _best(table: Sequence[Mapping], column: Column, group_key: str, exclude: Sequence[str]) -> float | None:
    vals = [r.get(column.key) for r in table if r.get(group_key) not in exclude]
    vals = _finite(vals)
    if not vals or column.better is None:
        return None
    return min(vals) if column.better == "lower" else max(vals)


def _cell(entry: Mapping, column: Column, best: float | None) -> str:
    mean = entry.get(column.key)
    if mean is None or not isinstance(mean, (int, float)) or not math.isfinite(float(mean)):
        return "—"
    text = f"{mean:.{column.digits}f}"
    if entry.get(f"{column.key}_n", 1) > 1:
        text += f" ± {entry.get(f'{column.key}_std', 0.0):.{column.digits}f}"
    if best is not None and round(float(mean), column.digits) == round(best, column.digits):
        text = f"**{text}**"
    return text


def markdown_table(
    table: Sequence[Mapping],
    columns: Sequence[Column | tuple] = COLUMNS,
    group_key: str = "simulator",
    header: str | None = None,
    exclude_from_best: Sequence[str] = (REFERENCE,),
    labels: Mapping[str, str] | None = None,
    notes: bool = True,
) -> str:
    """Markdown table of `compare_table` output: one row per group, one column per `Column` (or
    (key, label[, better[, digits]]) tuple) as "mean ± std" (the ± part when a metric has more than
    one value), "—" for NaN, the best value of each column in bold (rows in `exclude_from_best`, the
    reference, do not compete), a seeds column and the notes. `header`: a line above the table."""
    cols = [c if isinstance(c, Column) else Column(*c) for c in columns]
    best = {c.key: _best(table, c, group_key, exclude_from_best) for c in cols}
    head = [group_key, "seeds", *[c.label for c in cols]] + (["note"] if notes else [])
    lines = [header, ""] if header else []
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for entry in table:
        name = str(entry.get(group_key))
        label = (labels or {}).get(name)
        seeds = max([entry.get(f"{c.key}_n", 0) for c in cols] + [0])
        cells = [f"{label} (`{name}`)" if label and label != name else name, str(seeds)]
        cells += [_cell(entry, c, best[c.key]) for c in cols]
        if notes:
            cells.append(str(entry.get("note") or "").replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ====================================================================== result and outputs
@dataclass
class BenchmarkResult:
    """What `evaluate_run` measured and wrote: rows (one per simulator × seed), table (`compare_table`
    per simulator), summary (the nested dict of summary.json), paths of the written files, seconds."""

    out_dir: Path
    rows: list[dict]
    table: list[dict]
    summary: dict
    paths: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0

    def row(self, simulator: str) -> dict:
        """The table entry (mean ± std over seeds) of one simulator."""
        for entry in self.table:
            if entry["simulator"] == simulator:
                return entry
        raise KeyError(f"no simulator {simulator!r} in the benchmark; have {[e['simulator'] for e in self.table]}")

    def markdown(self) -> str:
        return self.paths["results.md"].read_text() if "results.md" in self.paths else ""


def _plain(obj):
    """JSON-safe copy: NaN / inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_csv(path, rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> Path:
    """Rows as CSV (atomic); columns default to the union of keys in order of appearance; NaN -> "nan"."""
    if columns is None:
        columns = []
        for r in rows:
            columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _csv_value(r.get(k)) for k in columns})
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def _csv_value(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    return v


def bar_chart(table: Sequence[Mapping], metric: str, title: str, path, group_key: str = "simulator") -> Path | None:
    """Bar chart (mean, std error bars) of one metric per group, written atomically as PNG with
    matplotlib's object API (no pyplot state, no backend switch). None when no group has a value."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    entries = [e for e in table if _finite([e.get(metric)])]
    if not entries:
        return None
    names = [str(e[group_key]) for e in entries]
    means = [float(e[metric]) for e in entries]
    stds = [float(e.get(f"{metric}_std", 0.0)) for e in entries]
    fig = Figure(figsize=(max(4.0, 0.9 * len(names) + 1.5), 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colors = ["0.6" if n == REFERENCE else "C0" if n.startswith("stage") else "C1" for n in names]
    ax.bar(range(len(names)), means, yerr=stds, color=colors, capsize=3)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


# ====================================================================== downstream
DOWNSTREAM_METRICS = {  # run_downstream metric -> (column suffix, scale)
    "accuracy": ("acc_pct", 100.0),
    "balanced_accuracy": ("bacc_pct", 100.0),
    "iou": ("iou_pct", 100.0),
    "miou": ("miou_pct", 100.0),
    "cd_l2_x1000": ("cd_l2_x1000", 1.0),
    "fscore": ("fscore_pct", 100.0),
}


def _crop_source(layout: DepthLayout, kind: str, size: int, eval_crop: int):
    """Depth source of the layout's own frames ("real" / "cad") cut to the model-size eval crop."""
    from sim2real_kit.data.dataset import crop_resize, eval_box

    box = eval_box(layout.camera, eval_crop)
    cam = layout.camera.crop(*box).resize(size, size)

    def source(ref: FrameRef):
        return crop_resize(layout.read_depth(ref, "gt" if kind == "cad" else "scan"), box, size), cam

    source.__name__ = kind
    return source


def run_benchmark_downstream(
    sims: Mapping[str, Simulator], layout: DepthLayout, cfg: Config, split: str, seeds: Sequence[int],
    steps: int, progress: bool = False,
) -> tuple[list[dict], dict[str, str]]:  # fmt: skip
    """Downstream task (DESIGN §5.4) through `downstream.run_downstream`: each simulator's output of the
    train split -> per-object partial clouds -> networks trained from scratch, tested on the real
    captures of `split`; "real" (the train split's real captures, model-size crop) is the upper bound.
    Returns (rows, {simulator: why it was left out})."""
    from sim2real_kit import downstream as ds

    size, crop = cfg.data.size, cfg.data.eval_crop
    skipped: dict[str, str] = {}
    kw = dict(seed=cfg.seed, min_points=cfg.benchmark.downstream_min_points)
    test = ds.extract_objects(layout, split, "scan", **kw)
    if len(test) == 0:
        raise Sim2RealError(f"no object of split {split!r} has enough real points for the downstream task")
    train_sets = {}
    for name, sim in sims.items():
        if name == "real":
            continue
        if sim.from_cad is not None:
            fn = sim.from_cad

            def frame_fn(cad, cam, rng, fn=fn):
                return fn(cad[None], cam, int(rng.integers(2**31)))[0]

            source = ds.simulator_depth_source(layout, frame_fn, size=size, eval_crop=crop, seed=cfg.seed, name=name)
        elif sim.train_samples is not None:
            cam = Camera.load_json(sim.train_samples / "camera.json")
            source = ds.folder_depth_source(sim.train_samples, sim.train_key, cam)
        else:
            skipped[name] = "downstream: no output of this simulator on the train split"
            continue
        try:
            objects = ds.extract_objects(layout, "train", source, name=name, **kw)
        except Sim2RealError as e:
            skipped[name] = f"downstream: {e}"
            continue
        if len(objects) == 0:
            skipped[name] = "downstream: no object with enough points in its train-split output"
            continue
        train_sets[name] = objects
    real_train = ds.extract_objects(layout, "train", _crop_source(layout, "real", size, crop), name="real", **kw)
    rows = ds.run_downstream(
        train_sets, test, seeds=list(seeds), few_shot_k=cfg.benchmark.downstream_few_shot_k,
        real_train_objects=real_train if len(real_train) else None,
        tasks=tuple(cfg.benchmark.downstream_tasks), steps=steps, progress=progress,
        num_threads=1,  # these small networks run 5-15x faster on one thread than on two busy cores
    )  # fmt: skip
    return rows, skipped


def _downstream_columns(row: Mapping) -> dict[str, float]:
    task = "cls" if row["task"] == "classification" else "rec"
    suffix = "" if row["setting"] == "zero-shot" else "_" + str(row["setting"]).replace("few-shot-", "fs")
    out = {}
    for metric, (name, scale) in DOWNSTREAM_METRICS.items():
        if metric in row and isinstance(row[metric], (int, float)):
            out[f"ds_{task}_{name}{suffix}"] = scale * float(row[metric])
    return out


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


def evaluate_run(
    run_dir,
    out=None,
    simulators: Sequence[str | Simulator] | None = None,
    seeds: int | Sequence[int] | None = None,
    split: str = "val",
    fuse: bool = True,
    downstream: bool = True,
    quick: bool = False,
    overrides=(),
    progress: bool = True,
    *,
    train_baselines: bool = False,
    baseline_steps: int | None = None,
) -> BenchmarkResult:
    """Benchmark every simulator of a run folder on `split` (DESIGN §5; see the module docstring).

    simulators: names of `SIMULATORS` and/or `Simulator` objects; default `cfg.benchmark.simulators`,
    plus pix2pix / cyclegan / direct / stage3 when the run holds them, plus "real" (in `SIMULATORS`
    order; unavailable ones get a row saying why). seeds: a count (seeds 0..n-1) or a list; default
    `cfg.benchmark.seeds`; deterministic simulators run the first seed only; stage k's seed 0 is its
    saved sample, other seeds are re-sampled with its pipeline. fuse: the 3D metrics (TSDF fusion per scene); downstream: the downstream task when the
    layout has instance ids (else a note). quick: DisCo points <= 20,000, seeds <= 2, downstream and
    baseline training <= 30 steps (CI). overrides: "a.b=c" applied to the run's config (not saved).
    train_baselines / baseline_steps: train missing pix2pix / CycleGAN baselines first.
    Writes results.csv, results.md, summary.json, figures/*.png, meshes/*.ply under `out`
    (default run_dir/benchmark). Frame sets that differ between the evaluated stages, samples of
    another split, or a simulator returning other frames raise Sim2RealError naming them."""
    from tqdm.auto import tqdm

    from sim2real_kit.metrics import depth_edges, hole_rates, stability_across_seeds
    from sim2real_kit.stages import disc_dir, run_config

    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise MissingArtifactError(
            "run folder has no config.yaml (make the run with notebook 01 / `sim2real synth` first)", run_dir
        )
    cfg = run_config(run_dir, overrides=overrides, save=False)
    bcfg = cfg.benchmark
    out_dir = Path(out) if out is not None else run_dir / "benchmark"
    seed_list = _seed_list(bcfg.seeds if seeds is None else seeds)
    num_points = int(bcfg.num_points)
    ds_steps = bcfg.downstream_steps
    if quick:
        seed_list = seed_list[:QUICK_SEEDS]
        num_points = min(num_points, QUICK_POINTS)
        ds_steps = min(ds_steps, QUICK_STEPS)
        baseline_steps = min(baseline_steps or QUICK_STEPS, QUICK_STEPS)

    # 1. which simulators -------------------------------------------------------------------
    availability = available_simulators(run_dir, cfg, split)
    if simulators is None:  # the config's list, the learned baselines / direct / Stage-III that exist, real
        wanted = set(bcfg.simulators) | {REFERENCE}
        wanted |= {n for n in ("pix2pix", "cyclegan", "direct", "stage3") if availability[n] is None}
        wanted |= {"pix2pix", "cyclegan"} if train_baselines else set()
        extra = [n for n in bcfg.simulators if n not in SIMULATORS]
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

    # 2. samples: one frame set for every simulator -----------------------------------------
    layout = _layout(run_dir, cfg)
    samples, stage_samples = benchmark_samples(run_dir, cfg, split, stages_wanted, layout)
    scenes = _scenes(samples.refs)
    sims: dict[str, Simulator] = {}
    skipped: dict[str, str] = {}
    for s in requested:
        if isinstance(s, Simulator):
            sims[s.name] = s
            continue
        try:
            sims[s] = make_simulator(
                s, run_dir, cfg, split, stage_samples=stage_samples, train_baselines=train_baselines,
                baseline_steps=baseline_steps, progress=progress,
            )  # fmt: skip
        except MissingArtifactError as e:
            skipped[s] = str(e)

    # 3. references: edges, real holes, fused real, view consistency of real and CAD ---------
    edges = depth_edges(samples.cad, bcfg.edge_threshold_m, bcfg.edge_dilate)  # [F, S, S]
    real_h = hole_rates(samples.cad, samples.real, edge_mask=edges)
    real_holes = {k: 100 * real_h[k] for k in ("all", "edge", "flat")}
    max_view = float(cfg.data.max_diff_m)
    reference = {
        "real": {"hole_all_pct": real_holes["all"], "hole_edge_pct": real_holes["edge"],
                 "hole_flat_pct": real_holes["flat"],
                 "view_mm": view_consistency_mm(samples.real, samples, scenes, max_view)},
        "cad": {"view_mm": view_consistency_mm(samples.cad, samples, scenes, max_view)},
    }  # fmt: skip
    real_meshes: dict = {}
    if fuse:
        real_meshes, why = fuse_scenes(samples.real, samples, scenes, bcfg)
        reference["real"]["fusion_failed"] = why
    disc_path = disc_dir(run_dir, 1) / "model.safetensors"
    disc_model = None
    if disc_path.is_file():
        from sim2real_kit.models.discriminator import PointNetDiscriminator

        disc_model = PointNetDiscriminator.load(disc_path)

    # 4. every simulator x seed ------------------------------------------------------------
    rows: list[dict] = []
    per_scene: dict[str, dict] = {}
    first_meshes: dict[str, object] = {}
    jobs = [(n, sd) for n, sim in sims.items() for sd in (seed_list if sim.stochastic else seed_list[:1])]
    bar = tqdm(total=len(jobs), desc="benchmark", disable=not progress)
    for name, sim in sims.items():
        sim_seeds = seed_list if sim.stochastic else seed_list[:1]
        outputs, sim_rows, sim_notes = [], [], []
        for seed in sim_seeds:
            t0 = time.perf_counter()
            bar.set_postfix_str(f"{name} seed {seed}")
            try:
                depth = sim.run(samples, seed)
            except MissingArtifactError as e:  # e.g. re-sampling without a pipeline: keep the seeds done
                if not outputs:
                    raise
                if str(e) not in sim_notes:
                    sim_notes.append(str(e))
                bar.update(1)
                continue
            depth = _check_output(name, depth, samples)
            row: dict = {"simulator": name, "seed": seed, "frames": len(samples.refs)}
            notes = [sim.note] if sim.note else []
            metrics, n = depth_realism(depth, samples, edges, real_holes)
            row.update(metrics)
            notes += n
            if fuse:
                same_as_real = np.array_equal(depth, samples.real)
                meshes, why = (real_meshes, {}) if same_as_real else fuse_scenes(depth, samples, scenes, bcfg)
                notes += [f"fusion of scene {sc}: {w}" for sc, w in why.items()]
                m3d, scene_vals, n = realism_3d(meshes, real_meshes, bcfg, num_points)
                row.update(m3d)
                notes += n
                per_scene.setdefault(name, {})[str(seed)] = scene_vals
                first = next(iter(scenes))
                if seed == sim_seeds[0] and meshes.get(first) is not None:
                    first_meshes[name] = meshes[first]
            else:
                row.update(_nan_metrics(KEYS_3D))  # fuse=False: 3D columns stay empty
            if disc_model is not None:
                try:
                    row["disc_fake_pct"] = discriminator_share_fake(disc_model, depth, samples, cfg)
                except Sim2RealError as e:
                    row["disc_fake_pct"] = math.nan
                    notes.append(f"discriminator: {e}")
            else:
                row["disc_fake_pct"] = math.nan
            row["view_mm"] = view_consistency_mm(depth, samples, scenes, max_view)
            row["view_gap_mm"] = abs(row["view_mm"] - reference["real"]["view_mm"])
            row["seconds"] = time.perf_counter() - t0
            row["note"] = "; ".join(dict.fromkeys(notes))
            outputs.append(depth)
            sim_rows.append(row)
            bar.update(1)
        spread, spread_note = _seed_spread(outputs, sim.stochastic, stability_across_seeds)
        for i, row in enumerate(sim_rows):
            row["seed_spread_mm"] = spread if i == 0 else math.nan  # one number per simulator: on its first row
            row["note"] = "; ".join(filter(None, [row["note"], *sim_notes, spread_note]))
        rows += sim_rows
    bar.close()
    disc_note = f"discriminator {disc_path}" if disc_model is not None else f"no discriminator at {disc_path}"
    for name, reason in skipped.items():
        rows.append({"simulator": name, "seed": None, "frames": 0, "note": f"skipped: {reason}"})

    # 5. downstream task ---------------------------------------------------------------------
    ds_rows, ds_note = [], ""
    if downstream:
        ds_rows, ds_note = _downstream_rows(sims, layout, cfg, split, seed_list, ds_steps, progress)
        rows = _merge_downstream(rows, ds_rows, len(samples.refs))
    else:
        ds_note = "not run (downstream=False)"

    # 6. tables, files ----------------------------------------------------------------------
    metric_keys = _metric_keys(rows)
    order = list(dict.fromkeys([*names, *(r["simulator"] for r in rows)]))  # downstream may add "real"
    table = compare_table(sorted(rows, key=lambda r: order.index(r["simulator"])), metric_keys)
    columns = list(COLUMNS) + [c for c in DOWNSTREAM_COLUMNS if c.key in metric_keys]
    seconds = time.perf_counter() - t_start
    header = (
        f"Benchmark of run `{run_dir.name}` ({run_dir}): split {split}, {len(samples.refs)} frames in "
        f"{len(scenes)} scenes at {samples.cad.shape[-1]} px, seeds {seed_list} (deterministic simulators: "
        f"seed {seed_list[0]}); mean ± std over seeds; best in bold (the `real` reference row excluded). "
        f"Real holes {real_holes['all']:.1f} % (edges {real_holes['edge']:.1f} %), real view disagreement "
        f"{reference['real']['view_mm']:.2f} mm, CAD {reference['cad']['view_mm']:.2f} mm; {disc_note}."
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

        md += "\nDownstream task (networks trained on each simulator's train-split output, tested on real):\n\n"
        md += ds.summary_markdown(ds.summarize(ds_rows))
    atomic_write_text(out_dir / "results.md", md)
    paths["results.md"] = out_dir / "results.md"
    for metric, title in FIGURES:
        p = bar_chart(table, metric, title, out_dir / "figures" / f"{metric}.png")
        if p is not None:
            paths[f"figures/{metric}.png"] = p
    if fuse and first_meshes:
        paths.update(_save_meshes(first_meshes, table, next(iter(scenes)), out_dir / "meshes"))
    summary = _summary(
        run_dir, cfg, split, samples, scenes, seed_list, names, sims, skipped, table, metric_keys, reference,
        per_scene, ds_rows, ds_note, columns, seconds, num_points, disc_note,
    )  # fmt: skip
    atomic_write_json(out_dir / "summary.json", _plain(summary))
    paths["summary.json"] = out_dir / "summary.json"
    if ds_rows:
        paths["downstream.csv"] = write_csv(out_dir / "downstream.csv", ds_rows)
    return BenchmarkResult(out_dir, rows, table, summary, paths, seconds)


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
    note = "; ".join(f"{k}: {v}" for k, v in skipped.items())
    return rows, note


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
    run_dir, cfg, split, samples, scenes, seed_list, names, sims, skipped, table, metric_keys, reference,
    per_scene, ds_rows, ds_note, columns, seconds, num_points, disc_note,
) -> dict:  # fmt: skip
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
    best = {}
    for c in columns:
        value = _best(table, c, "simulator", (REFERENCE,))
        if value is not None:
            best[c.key] = [e["simulator"] for e in table if _finite([e.get(c.key)]) and
                           round(e[c.key], c.digits) == round(value, c.digits) and e["simulator"] != REFERENCE]  # fmt: skip
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


__all__ = [
    "SIMULATORS",
    "LABELS",
    "COLUMNS",
    "DOWNSTREAM_COLUMNS",
    "Column",
    "Simulator",
    "BenchmarkResult",
    "available_simulators",
    "make_simulator",
    "benchmark_samples",
    "cad_normals",
    "cad_incidence",
    "depth_realism",
    "fuse_scenes",
    "realism_3d",
    "view_consistency_mm",
    "discriminator_share_fake",
    "run_benchmark_downstream",
    "compare_table",
    "markdown_table",
    "write_csv",
    "bar_chart",
    "evaluate_run",
]
