"""The real-sensor track: the kit's simulators against a real depth sensor (paper Sec. 4's evaluation, on
the shipped YCB-Video sample instead of LASA).

`data/ycbv_sample` holds five real frames of YCB-Video (Xiang et al., PoseCNN, RSS 2018; objects of the
YCB set, Calli et al. 2015): Asus Xtion depth (PrimeSense structured light, 640x480, 0.1 mm units),
object meshes and exact object poses. `data.convert.import_ycbv` renders the CAD depth of the posed
meshes, so every pair is real capture vs CAD of the *same view*; CAD exists on the three objects only
(0 on table and wall, as in LASA). Everything here is measured on object pixels (label id > 0 and CAD > 0).

1. `import_real_sample(run_dir)`: the sample into `run_dir/real_sample/data` (`lasa_depth` layout), once.
2. `sample_summary`: what the real sensor does to the CAD (|CAD - real|, holes, edges vs flat) for notebook 01.
3. The physical baselines of the benchmark (`benchmark.make_simulator`: clean CAD, random noise, the
   textbook Kinect v1 model of Nguyen et al. 2012, the Redwood model of Choi et al. 2015) run on the
   sample's CAD and are scored against the real sensor with the benchmark's own metric functions
   (`benchmark.depth_realism`: residual W1, hole rates, edge / flat residuals; `metrics.residuals` for
   the |residual| percentiles).
4. A few-shot Stage-I (`HeldOutCrops`, `train_heldout_stage1`): trained on native-resolution crops (side =
   the preset's model size) of the real frames with one object held out: on its pixels the training maps
   carry the CAD only and the loss weight is 0, so its real depth never reaches the model. The trained
   pipeline then simulates model-size tiles covering every object and is scored on exactly the held-out
   object's pixels, beside the baselines. The five frames come from an almost static camera (< 1 mm
   apart), so this is a few-shot demonstration on one scene, not a generalisation measure.

`evaluate_real_sample` does 1, 3 and 4 and writes `run_dir/benchmark/real_sample/`: results.csv (one row
per region x simulator x seed), results.md, summary.json and figures/*.png.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sim2real_kit.camera import Camera
from sim2real_kit.config import Config
from sim2real_kit.data.dataset import MAP_KEYS
from sim2real_kit.data.layout import DepthLayout, FrameRef
from sim2real_kit.errors import ConfigError, LayoutError, MissingArtifactError, Sim2RealError
from sim2real_kit.io import atomic_write_json, atomic_write_text
from sim2real_kit.stages import SampleSet

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SAMPLE = "data/ycbv_sample"  # relative to the working directory, else to the repository
SAMPLE_DIR = "real_sample"  # run_dir/real_sample/{data, stage1}
SENSOR = "Asus Xtion (PrimeSense structured light), YCB-Video"
REGIONS = ("objects", "heldout", "seen")  # all object pixels | the held-out object | the other objects
REGION_TEXT = {
    "objects": "all object pixels (label > 0, CAD > 0)",
    "heldout": "pixels of the held-out object (never in Stage-I's loss)",
    "seen": "pixels of the other objects (Stage-I trained on them: in-sample)",
}
LABELS = {
    "cad": "CAD (w/o sim)",
    "random": "random noise",
    "stage1": "Stage-I (few-shot)",
    "real": "real (reference)",
}
QUICK_STEPS = 24  # quick=True: Stage-I steps at most (CI)
HELD_OUT_NOTE = (
    "Few-shot demonstration: Stage-I sees four to five frames of one static scene (camera moves < 1 mm "
    "between frames) with one object's pixels removed from its loss; it is scored on exactly those pixels. "
    "It shows whether a residual learned on some objects transfers to an unseen object of the same scene "
    "and sensor; it cannot show generalisation to other scenes, ranges or sensors."
)
_MAPS = MAP_KEYS  # channels of PairedDepthDataset.encode_maps
_MASK, _TARGET, _VALID = _MAPS.index("mask"), _MAPS.index("target"), _MAPS.index("valid")


# ====================================================================== the sample on disk
def resolve_sample(src: str | Path = DEFAULT_SAMPLE) -> Path:
    """The YCB-Video folder `src`: absolute, or relative to the working directory, else to the repository
    (so notebooks find the shipped sample from papermill's working directory)."""
    path = Path(src).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, REPO_ROOT / path]
    for candidate in candidates:
        if (candidate / "image_sets" / "classes.txt").is_file():
            return candidate.resolve()
    where = ", ".join(str(c) for c in candidates)
    raise MissingArtifactError(
        f"real sample {str(src)!r} not found (looked for image_sets/classes.txt in {where}); the kit ships a "
        f"YCB-Video sample at {REPO_ROOT / DEFAULT_SAMPLE}"
    )


def sample_dir(run_dir: str | Path) -> Path:
    """`run_dir/real_sample`: the imported layout (`data/`) and the few-shot Stage-I (`stage1/`)."""
    return Path(run_dir) / SAMPLE_DIR


def import_real_sample(run_dir: str | Path, src: str | Path = DEFAULT_SAMPLE, progress: bool = False) -> DepthLayout:
    """Import the YCB-Video folder `src` into `run_dir/real_sample/data` (`data.convert.import_ycbv`) unless a
    complete import of the same source is already there (then it is reused as is). Returns the layout."""
    from sim2real_kit.data.convert import REPORT_NAME, import_ycbv
    from sim2real_kit.data.layout import validate

    source = resolve_sample(src)
    out = sample_dir(run_dir) / "data"
    if (out / "dataset.yaml").is_file() and (out / REPORT_NAME).is_file():
        try:
            layout = DepthLayout(out)
            same = (layout.meta.get("source") or {}).get("root") == str(source)
            if same and not validate(out):
                return layout
        except Sim2RealError:
            pass  # unreadable leftovers: import again below
    return import_ycbv(source, out, progress=progress, overwrite=True)


@dataclass
class RealFrames:
    """Every frame of an imported real sample at full resolution (train and val lists together).

    cad, real: [F, H, W] float32 metres (CAD 0 where no mesh); instance: [F, H, W] int32 class id per pixel
    (0 = background); poses [F, 4, 4] camera-to-world; classes {class id: name}."""

    refs: list[FrameRef]
    cad: np.ndarray
    real: np.ndarray
    instance: np.ndarray
    camera: Camera
    poses: np.ndarray
    classes: dict[int, str]
    root: Path

    def object_mask(self, class_id: int | None = None) -> np.ndarray:
        """bool [F, H, W]: pixels labelled as an object (or as `class_id`) that have CAD depth."""
        labelled = self.instance > 0 if class_id is None else self.instance == int(class_id)
        return labelled & (self.cad > 0)

    def object_cad(self) -> np.ndarray:
        """[F, H, W] CAD depth on object pixels only (0 elsewhere): the CAD every object statistic uses."""
        return np.where(self.object_mask(), self.cad, 0.0).astype(np.float32)

    def samples(self, region: np.ndarray) -> SampleSet:
        """A `SampleSet` whose CAD is limited to `region` [F, H, W] (0 elsewhere): every residual, hole and
        edge metric of the benchmark then counts exactly the region's pixels."""
        cad = np.where(region, self.cad, 0.0).astype(np.float32)
        return SampleSet(list(self.refs), cad, self.real, {}, self.camera, self.poses)

    def object_box(self, margin: int = 16) -> tuple[int, int, int, int]:
        """(left, top, width, height) around every object pixel of every frame, `margin` pixels wider."""
        ys, xs = np.nonzero(self.object_mask().any(axis=0))
        H, W = self.cad.shape[-2:]
        left, top = max(int(xs.min()) - margin, 0), max(int(ys.min()) - margin, 0)
        right, bottom = min(int(xs.max()) + 1 + margin, W), min(int(ys.max()) + 1 + margin, H)
        return left, top, right - left, bottom - top

    def view(self, index: int = 0, crop: bool = True, margin: int = 16) -> dict[str, Any]:
        """One frame for figures: {'cad', 'real' [h, w] metres, 'instance', 'camera', 'pose', 'ref'},
        cropped to `object_box` when `crop`."""
        i = index % len(self.refs)
        left, top, w, h = self.object_box(margin) if crop else (0, 0, self.camera.width, self.camera.height)
        win = (slice(top, top + h), slice(left, left + w))
        return {
            "cad": self.cad[i][win],
            "real": self.real[i][win],
            "instance": self.instance[i][win],
            "camera": self.camera.crop(left, top, w, h),
            "pose": self.poses[i],
            "ref": self.refs[i],
        }


def load_frames(layout: DepthLayout) -> RealFrames:
    """All frames of an imported sample (instance ids required: they define the object pixels)."""
    refs = sorted({*layout.frames("train"), *layout.frames("val")})
    cad, real, instance, poses = [], [], [], []
    for ref in refs:
        frame = layout.read_frame(ref, instance=True)
        if "instance" not in frame:
            raise LayoutError(
                "instance ids are missing: the real-sample track needs _inst.png (import with data.convert)",
                layout.depth_path(ref, "inst"),
            )
        cad.append(frame["cad"])
        real.append(frame["real"])
        instance.append(frame["instance"])
        poses.append(frame["pose"])
    classes = {int(k): str(v) for k, v in (layout.meta.get("classes") or {}).items()}
    return RealFrames(
        refs, np.stack(cad), np.stack(real), np.stack(instance), layout.camera, np.stack(poses), classes, layout.root
    )


def resolve_holdout(frames: RealFrames, holdout: int | str | None = None) -> int:
    """Class id of the held-out object: an id, a class name (or a unique part of one, e.g. "mug"), or
    None / "" / 0 for the object with the most pixels. Raises ConfigError naming the value and the
    sample's objects when it is not one of them."""
    present = sorted(int(c) for c in np.unique(frames.instance[frames.object_mask()]))
    names = {c: frames.classes.get(c, str(c)) for c in present}
    if holdout is None or holdout == "" or holdout == 0:
        counts = {c: int(frames.object_mask(c).sum()) for c in present}
        return max(present, key=lambda c: (counts[c], -c))
    text = str(holdout).strip()
    if text.lstrip("-").isdigit():
        class_id = int(text)
        if class_id in present:
            return class_id
    else:
        hits = [c for c, n in names.items() if n == text] or [c for c, n in names.items() if text.lower() in n.lower()]
        if len(hits) == 1:
            return hits[0]
    listed = ", ".join(f"{c} ({n})" for c, n in names.items())
    raise ConfigError(
        f"held-out object {holdout!r} is not an object of the real sample {frames.root}; its objects are {listed}"
    )


# ====================================================================== metrics on a region
PERCENTILES = (50, 90, 99)  # of |residual| (mm)


@dataclass
class _Region:
    """A region's reference: CAD limited to it, its edges and the real sensor's hole rates there (%)."""

    samples: SampleSet
    edges: np.ndarray
    real_holes: dict[str, float]

    @classmethod
    def of(cls, frames: RealFrames, region: np.ndarray, edge_threshold_m: float, edge_dilate: int) -> _Region:
        from sim2real_kit.metrics import depth_edges, hole_rates

        samples = frames.samples(region)
        edges = depth_edges(samples.cad, edge_threshold_m, edge_dilate)
        holes = hole_rates(samples.cad, samples.real, edge_mask=edges)
        return cls(samples, edges, {k: 100 * holes[k] for k in ("all", "edge", "flat")})


def region_metrics(depth: np.ndarray, region: _Region) -> tuple[dict[str, float], list[str]]:
    """The benchmark's depth metrics (`benchmark.depth_realism`: AbsRel, RMSE, δ1, residual W1, hole rates
    and gaps to real, edge / flat residuals) of simulated frames [F, H, W] on the region's pixels, plus the
    residual's mean and std and |residual| percentiles (mm). (metrics, notes)."""
    from sim2real_kit.benchmark import depth_realism
    from sim2real_kit.metrics import residuals

    sim = np.where(region.samples.cad > 0, depth, 0.0).astype(np.float32)  # nothing counts outside the region
    out, notes = depth_realism(sim, region.samples, region.edges, region.real_holes)
    res_mm = 1000 * residuals(region.samples.cad, sim)
    if res_mm.size:
        out.update(res_mean_mm=float(res_mm.mean()), res_std_mm=float(res_mm.std()),
                   abs_mean_mm=float(np.abs(res_mm).mean()))  # fmt: skip
        for q, v in zip(PERCENTILES, np.percentile(np.abs(res_mm), PERCENTILES)):
            out[f"abs_p{q}_mm"] = float(v)
    else:
        out.update({k: math.nan for k in ("res_mean_mm", "res_std_mm", "abs_mean_mm")})
        out.update({f"abs_p{q}_mm": math.nan for q in PERCENTILES})
        notes.append("no valid pixel in the region")
    return out, notes


def sample_summary(frames: RealFrames, edge_threshold_m: float = 0.05, edge_dilate: int = 1) -> dict:
    """The real sensor on object pixels (notebook 01): frames, object pixels, median / 90th percentile of
    |CAD - real| (mm), hole rate (all, at CAD edges, flat), mean |residual| at edges and on flat areas (mm)
    and the residual W1 of clean CAD vs real (mm)."""
    region = _Region.of(frames, frames.object_mask(), edge_threshold_m, edge_dilate)
    m, _ = region_metrics(frames.real, region)
    cad_row, _ = region_metrics(frames.cad, region)
    return {
        "sensor": SENSOR,
        "frames": len(frames.refs),
        "frame_size": [frames.camera.width, frames.camera.height],
        "objects": {str(c): n for c, n in frames.classes.items()},
        "object_px": int(frames.object_mask().sum()),
        "median_abs_mm": m["abs_p50_mm"],
        "p90_abs_mm": m["abs_p90_mm"],
        "residual_mean_mm": m["res_mean_mm"],
        "residual_std_mm": m["res_std_mm"],
        "hole_rate": m["hole_all_pct"] / 100,
        "hole_rate_edge": m["hole_edge_pct"] / 100,
        "hole_rate_flat": m["hole_flat_pct"] / 100,
        "residual_mean_abs_edge_mm": m["edge_mae_mm"],
        "residual_mean_abs_flat_mm": m["flat_mae_mm"],
        "w1_cad_vs_real_mm": cad_row["w1_mm"],
    }


def compare_worlds(procedural: Mapping, real: Mapping) -> str:
    """Markdown table of `stages.dataset_summary` (procedural world) beside `sample_summary` (real sample)."""
    rows = [
        ("pixels counted", "every CAD pixel (CAD everywhere)", "object pixels (CAD on the objects only)"),
        ("mean |residual| at CAD edges, mm", procedural.get("residual_mean_abs_edge_mm"), real.get("residual_mean_abs_edge_mm")),
        ("mean |residual| on flat areas, mm", procedural.get("residual_mean_abs_flat_mm"), real.get("residual_mean_abs_flat_mm")),
        ("hole rate at edges", procedural.get("hole_rate_edge"), real.get("hole_rate_edge")),
        ("hole rate on flat areas", procedural.get("hole_rate_flat"), real.get("hole_rate_flat")),
        ("residual W1, clean CAD vs real, mm", procedural.get("w1_cad_vs_real_mm"), real.get("w1_cad_vs_real_mm")),
    ]  # fmt: skip

    def cell(v):
        return f"{v:.3g}" if isinstance(v, (int, float)) else str(v)

    lines = ["| | procedural world (ARKit-like model) | real sample (Asus Xtion) |", "|---|---|---|"]
    lines += [f"| {name} | {cell(a)} | {cell(b)} |" for name, a, b in rows]
    return "\n".join(lines) + "\n"


# ====================================================================== physical baselines
def baseline_simulators(cfg: Config) -> dict:
    """The benchmark's CAD-driven simulators: `cad`, `random`, `physical` (the config's
    `benchmark.physical_model`) and `physical_<other>` (the other published `GenericSensor` model)."""
    from sim2real_kit.benchmark import make_simulator
    from sim2real_kit.data.sensor import GENERIC_MODELS

    sims = {name: make_simulator(name, REPO_ROOT, cfg) for name in ("cad", "random", "physical")}
    main = cfg.benchmark.physical_model
    for model in GENERIC_MODELS:
        if model == main:
            continue
        other = copy.deepcopy(cfg)
        other.override([f"benchmark.physical_model={model}"])
        sim = make_simulator("physical", REPO_ROOT, other)
        sim.name = f"physical_{model}"
        sims[sim.name] = sim
    return sims


def baseline_outputs(frames: RealFrames, cfg: Config, seed: int = 0, cad: bool = False) -> dict[str, np.ndarray]:
    """{label: simulated depth [F, H, W] metres} of the physical baselines on the sample's CAD (one seed);
    clean CAD itself only with `cad=True`."""
    sims = baseline_simulators(cfg)
    return {s.label: s.from_cad(frames.cad, frames.camera, seed) for n, s in sims.items() if cad or n != "cad"}


# ====================================================================== few-shot Stage-I
class HeldOutCrops(Dataset):
    """Random native-resolution crops (side `size` px) of the real frames for Stage-I, one object held out.

    The maps are the kit's (`PairedDepthDataset.encode_maps` of `encoder`: log-normalised CAD and real,
    residual target, loss mask of `data.holes`) at full resolution. On the held-out object's pixels they
    are replaced by the maps of (CAD, CAD) — the CAD condition stays, the real depth is gone, the target
    is a zero residual — and the loss weight is set to 0: its real depth never reaches the model. (A zero
    weight alone would not do: the noisy input x_t holds the target at every pixel, and the UNet carries
    it to the loss pixels around.) Crops
    are centred on a random loss-weighted pixel, drawn from (seed, epoch, index).

    Items: `cad_n`, `target`, `mask`, `heldout` (1 on held-out pixels), each [1, S, S] float32."""

    def __init__(
        self,
        frames: RealFrames,
        encoder,
        holdout_id: int,
        size: int,
        length: int = 256,
        seed: int = 0,
        keys: Sequence[str] = ("cad_n", "target", "mask", "heldout"),
    ):
        H, W = frames.cad.shape[-2:]
        if not 0 < size <= min(H, W):
            raise ConfigError(f"crop size {size} px does not fit the {W}x{H} frames (data.size)")
        unknown = [k for k in keys if k not in (*_MAPS, "heldout")]
        if unknown:
            raise ConfigError(f"unknown map keys {unknown}; valid: {', '.join((*_MAPS, 'heldout'))}")
        self.size, self.length, self.seed, self.keys = int(size), int(length), int(seed), tuple(keys)
        self.epoch = 0
        self.holdout_id = int(holdout_id)
        self.heldout = frames.instance == self.holdout_id  # [F, H, W]
        maps = []
        for cad, real, held in zip(frames.cad, frames.real, self.heldout):
            m = encoder.encode_maps(cad, real)  # [6, H, W]
            m[:, held] = encoder.encode_maps(cad, cad)[:, held]  # CAD only: no trace of the real depth
            m[_MASK, held] = m[_VALID, held] = 0.0
            maps.append(m)
        self.maps = np.stack(maps)  # [F, 6, H, W]
        self.residual_scale = float(encoder.residual_scale)
        self.target_kind = encoder.target
        self.centres = np.argwhere(self.maps[:, _MASK] > 0)  # [N, 3] (frame, row, col) of loss pixels
        if not len(self.centres):
            raise LayoutError(f"no loss-weighted pixel left once object {holdout_id} is held out", frames.root)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def box(self, index: int) -> tuple[int, int, int, int]:
        """(frame, left, top, size) of item `index` in the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        f, row, col = self.centres[rng.integers(len(self.centres))]
        H, W = self.maps.shape[-2:]
        half = self.size // 2
        left = int(np.clip(col - half, 0, W - self.size))
        top = int(np.clip(row - half, 0, H - self.size))
        return int(f), left, top, self.size

    def crop(self, frame: int, left: int, top: int) -> dict[str, torch.Tensor]:
        """The maps of the window [left, left+S) x [top, top+S) of `frame` as [1, S, S] tensors."""
        win = (slice(top, top + self.size), slice(left, left + self.size))
        out = {}
        for key in self.keys:
            if key == "heldout":
                arr = self.heldout[frame][win].astype(np.float32)
            else:
                arr = self.maps[frame, _MAPS.index(key)][win]
            out[key] = torch.from_numpy(np.ascontiguousarray(arr)[None])
        return out

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        f, left, top, _ = self.box(index)
        return self.crop(f, left, top)

    def target_std(self) -> float:
        """Std of the unscaled residual (real_n - cad_n) over the pixels where CAD and real are both valid
        and within max_diff (held-out excluded): holes (generate mode) never set the scale."""
        keep = (self.maps[:, _MASK] > 0) & (self.maps[:, _VALID] > 0)
        t = self.maps[:, _TARGET][keep].astype(np.float64) / self.residual_scale
        return float(t.std())

    def set_residual_scale(self, scale: float) -> None:
        """Re-scale the residual target to `scale` x (real_n - cad_n)."""
        if self.target_kind != "residual":
            raise ConfigError("set_residual_scale needs model.target = residual")
        self.maps[:, _TARGET] *= float(scale) / self.residual_scale
        self.residual_scale = float(scale)


def heldout_dataset(frames: RealFrames, cfg: Config, holdout_id: int, length: int = 256) -> HeldOutCrops:
    """`HeldOutCrops` at the config's model size with the kit's encoding (`data.holes`, `model.target`,
    `model.residual_scale`, `data.max_diff_m`). With `model.target_std > 0` (a residual target) the scale is
    set from the training pixels so the target has that std, and written into `cfg.model.residual_scale`."""
    from sim2real_kit.data.dataset import PairedDepthDataset

    layout = DepthLayout(frames.root)
    encoder = PairedDepthDataset.from_config(cfg, layout, "train", train=False)
    ds = HeldOutCrops(frames, encoder, holdout_id, cfg.data.size, length=length, seed=cfg.seed)
    target_std = cfg.model.target_std
    if target_std > 0 and cfg.model.target == "residual":
        std = ds.target_std()
        if not std > 1e-9:
            raise ConfigError(f"model.target_std: CAD and real depth agree on the training pixels of {frames.root}")
        ds.set_residual_scale(target_std / std)
        cfg.model.residual_scale = ds.residual_scale
    return ds


def train_heldout_stage1(
    frames: RealFrames, cfg: Config, holdout_id: int, out_dir: str | Path, steps: int, progress: bool = False
):
    """Train (or reuse) a Stage-I on `HeldOutCrops` with the kit's pieces (`stages.build_stage`, the
    Stage-I loss `stages._loss_fn`, `training.Trainer`) into `out_dir` (checkpoints, losses.csv,
    `pipeline/`, `settings.json`). A finished run with the same settings is loaded, not retrained; other
    settings start over. Returns (Sim2RealPipeline on the kit's device, summary dict)."""
    from sim2real_kit.pipeline import Sim2RealPipeline
    from sim2real_kit.stages import _collate, _device, _loss_fn, _save_stage_pipeline, _StageModel, build_stage
    from sim2real_kit.training import Trainer

    cfg = copy.deepcopy(cfg)
    out_dir = Path(out_dir)
    ds = heldout_dataset(frames, cfg, holdout_id)
    train_cfg = dataclasses.replace(cfg.train, steps=int(steps), val_every=0, sample_every=0)
    settings = json.loads(json.dumps({
        "holdout_id": int(holdout_id), "steps": int(steps), "size": int(cfg.data.size), "seed": int(cfg.seed),
        "source": str(frames.root), "holes": cfg.data.holes, "max_diff_m": cfg.data.max_diff_m,
        "model": dataclasses.asdict(cfg.model), "train": dataclasses.asdict(train_cfg),
    }, default=str))  # fmt: skip
    settings_path, pipe_dir = out_dir / "settings.json", out_dir / "pipeline"
    same = settings_path.is_file() and json.loads(settings_path.read_text()) == settings
    summary: dict = {"steps": int(steps), "residual_scale": ds.residual_scale, "reused": False}
    if same and (pipe_dir / "model_index.json").is_file():
        summary["reused"] = True
        return Sim2RealPipeline.from_pretrained(pipe_dir).to(_device()), summary
    torch.manual_seed(cfg.seed)
    codec, denoiser, scheduler = build_stage(cfg, cond_maps=1)
    trainer = Trainer(
        _StageModel(codec, denoiser), _loss_fn(scheduler, use_prev=False, reweight=False), ds, train_cfg, out_dir,
        seed=cfg.seed, collate_fn=_collate, resume=same, overwrite=not same, progress=progress,
    )  # fmt: skip
    atomic_write_json(settings_path, settings)
    summary.update(trainer.fit())
    _save_stage_pipeline(cfg, trainer, codec, previous=[], out=pipe_dir)
    return Sim2RealPipeline.from_pretrained(pipe_dir).to(_device()), summary


def tile_boxes(region: np.ndarray, size: int) -> list[tuple[int, int]]:
    """(left, top) of the size x size tiles of a regular grid over a frame [H, W] that hold a pixel of
    `region` (the last row / column of tiles is shifted to end at the frame's border)."""
    H, W = region.shape
    lefts = sorted({*range(0, W - size + 1, size), W - size})
    tops = sorted({*range(0, H - size + 1, size), H - size})
    return [(x, y) for y in tops for x in lefts if region[y : y + size, x : x + size].any()]


def simulate_tiles(
    pipe, frames: RealFrames, region: np.ndarray, seed: int, steps: int | None = None, eta: float = 0.0
) -> np.ndarray:
    """Full-resolution simulated depth [F, H, W] (0 outside the tiles): the pipeline run on model-size
    native-resolution tiles of the CAD covering `region` [F, H, W] (no resize: tile side = pipeline size)."""
    size = int(pipe.config.size)
    boxes = [(f, x, y) for f in range(len(frames.refs)) for x, y in tile_boxes(region[f], size)]
    out = np.zeros_like(frames.cad)
    if not boxes:
        return out
    tiles = np.stack([frames.cad[f, y : y + size, x : x + size] for f, x, y in boxes])  # [N, S, S]
    gen = torch.Generator().manual_seed(int(seed))
    depth = np.asarray(pipe(tiles, num_inference_steps=steps, eta=eta, generator=gen).depth)
    for (f, x, y), tile in zip(boxes, depth):
        out[f, y : y + size, x : x + size] = tile
    return out


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
    run_dir: str | Path,
    src: str | Path = DEFAULT_SAMPLE,
    out: str | Path | None = None,
    *,
    holdout: int | str | None = None,
    steps: int | None = None,
    seeds: int | Sequence[int] | None = None,
    stage1: bool = True,
    quick: bool = False,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> RealSampleResult:
    """The real-sample section of the benchmark (see the module docstring) for a run folder.

    Config: the run's `config.yaml` (else the tiny preset), `overrides` on top; quick=True also applies
    `stages.QUICK_OVERRIDES`, one seed, <= 24 Stage-I steps and Stage-I tiles over the held-out object
    only (no "seen" row; CI). holdout: class id or name (default
    `benchmark.real_sample_holdout`, else the largest object); steps: Stage-I steps (default
    `benchmark.real_sample_steps`, else `train.steps`); seeds: count or list (default `benchmark.seeds`).
    stage1=False skips the few-shot Stage-I. Writes results.csv, results.md, summary.json and figures/ into
    `out` (default run_dir/benchmark/real_sample)."""
    from sim2real_kit.benchmark import Column, bar_chart, compare_table, markdown_table, write_csv
    from sim2real_kit.stages import QUICK_OVERRIDES, run_config

    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    cfg = run_config(run_dir, overrides=[*(QUICK_OVERRIDES if quick else ()), *overrides], save=False)
    bcfg = cfg.benchmark
    out_dir = Path(out) if out is not None else run_dir / "benchmark" / SAMPLE_DIR
    seed_list = list(range(int(seeds))) if isinstance(seeds, int) else list(seeds or range(int(bcfg.seeds)))
    if not seed_list:
        raise ConfigError("seeds is empty: give a count >= 1 or a list of seeds")
    steps = int(steps if steps is not None else (bcfg.real_sample_steps or cfg.train.steps))
    if quick:
        seed_list, steps = seed_list[:1], min(steps, QUICK_STEPS)
    if holdout is None:
        holdout = bcfg.real_sample_holdout

    # 1. the sample, the held-out object, the regions -----------------------------------------
    layout = import_real_sample(run_dir, src, progress=progress)
    frames = load_frames(layout)
    holdout_id = resolve_holdout(frames, holdout)
    masks = {
        "objects": frames.object_mask(),
        "heldout": frames.object_mask(holdout_id),
        "seen": frames.object_mask() & (frames.instance != holdout_id),
    }
    regions = {k: _Region.of(frames, m, bcfg.edge_threshold_m, bcfg.edge_dilate) for k, m in masks.items()}

    # 2. simulators: physical baselines, few-shot Stage-I, real ----------------------------------
    rows: list[dict] = []
    first: dict[str, np.ndarray] = {}  # first seed's full-frame output per simulator (figures)

    def score(name: str, seed: int, depth: np.ndarray, where: Sequence[str], note: str = "") -> None:
        first.setdefault(name, depth)
        for region in where:
            metrics, notes = region_metrics(depth, regions[region])
            rows.append({"region": region, "simulator": name, "seed": seed, **metrics,
                         "note": "; ".join(filter(None, [note, *notes]))})  # fmt: skip

    sims = baseline_simulators(cfg)
    labels = {**LABELS, **{n: s.label for n, s in sims.items()}}
    for name, sim in sims.items():
        for seed in seed_list if sim.stochastic else seed_list[:1]:
            score(name, seed, sim.from_cad(frames.cad, frames.camera, seed), REGIONS)
    train_summary: dict = {}
    if stage1:
        pipe, train_summary = train_heldout_stage1(
            frames, cfg, holdout_id, sample_dir(run_dir) / "stage1", steps, progress=progress
        )
        # quick: tiles over the held-out object only (a quarter of the sampling work)
        tiled, where = (masks["heldout"], ("heldout",)) if quick else (masks["objects"], ("heldout", "seen"))
        for seed in seed_list:
            score(
                "stage1", seed, simulate_tiles(pipe, frames, tiled, seed, cfg.sampling.steps, cfg.sampling.eta), where
            )
    score("real", seed_list[0], frames.real, REGIONS)

    # 3. tables, files, figures ---------------------------------------------------------------
    order = [*sims, "stage1", "real"]
    metric_keys = [k for k in rows[0] if k not in ("region", "simulator", "seed", "note")]
    table: list[dict] = []
    for region in REGIONS:
        region_rows = sorted((r for r in rows if r["region"] == region), key=lambda r: order.index(r["simulator"]))
        table += [{"region": region, **entry} for entry in compare_table(region_rows, metric_keys)]
    rows.sort(key=lambda r: (REGIONS.index(r["region"]), order.index(r["simulator"]), r["seed"]))
    name = frames.classes.get(holdout_id, str(holdout_id))
    held_px = int(masks["heldout"].sum())
    paths: dict[str, Path] = {}
    paths["results.csv"] = write_csv(
        out_dir / "results.csv", rows, ["region", "simulator", "seed", *metric_keys, "note"]
    )
    columns = [Column(*c) for c in COLUMNS_SPEC]
    md = [
        f"Real sample ({SENSOR}): {len(frames.refs)} frames of {frames.camera.width}x{frames.camera.height} from "
        f"{frames.root}; run `{run_dir.name}`; seeds {seed_list} (deterministic simulators: seed {seed_list[0]}); "
        f"held-out object {holdout_id} ({name}, {held_px} px over the frames). Residual = CAD − depth on the "
        "region's pixels; W1 = Wasserstein-1 of the residual distribution vs the real sensor's (mm); holes = "
        "share of the region's pixels without depth. Best in bold (the `real` row excluded).\n",
    ]
    if stage1:
        md.append(
            f"Stage-I: {cfg.preset} preset model trained {steps} steps (batch {cfg.train.batch_size}) on "
            f"{cfg.data.size}x{cfg.data.size} native-resolution crops, residual scale "
            f"{train_summary.get('residual_scale', cfg.model.residual_scale):.4g}, DDIM-{cfg.sampling.steps} on "
            f"{cfg.data.size}-px tiles covering {'the held-out object' if quick else 'the objects'}. {HELD_OUT_NOTE}\n"
        )
        if float(getattr(cfg.model, "target_std", 0.0) or 0.0) > 0:
            md.append(
                f"The residual scale comes from the real residual's std on the training pixels (model.target_std = "
                f"{cfg.model.target_std}): the spread of Stage-I's output is calibrated on real data by construction, "
                "so read W1 together with where the large residuals go (edge vs flat columns).\n"
            )
    for region in REGIONS:
        entries = [e for e in table if e["region"] == region]
        md.append(markdown_table(entries, columns, header=f"**{region}**: {REGION_TEXT[region]}", labels=labels))
    atomic_write_text(out_dir / "results.md", "\n".join(md))
    paths["results.md"] = out_dir / "results.md"
    figures = _figures(frames, regions, first, labels, holdout_id, name)
    for key, fig in figures.items():
        from sim2real_kit.viz import save_figure

        paths[f"figures/{key}.png"] = save_figure(fig, out_dir / "figures" / f"{key}.png")
    for region in ("objects", "heldout"):
        entries = [e for e in table if e["region"] == region]
        p = bar_chart(entries, "w1_mm", f"Residual W1 vs the real sensor, {region} (mm, lower is better)",
                      out_dir / "figures" / f"w1_{region}.png")  # fmt: skip
        if p is not None:
            paths[f"figures/w1_{region}.png"] = p
    seconds = time.perf_counter() - t_start
    summary = _summary(table, metric_keys, frames, holdout_id, name, held_px, seed_list, steps, stage1,
                       train_summary, labels, cfg, seconds)  # fmt: skip
    atomic_write_json(out_dir / "summary.json", _plain(summary))
    paths["summary.json"] = out_dir / "summary.json"
    return RealSampleResult(out_dir, rows, table, summary, paths, figures, seconds)


def _figures(frames, regions, first, labels, holdout_id, name) -> dict:
    """Residual histograms on the held-out object and CAD / real / simulated panels around it (frame 0)."""
    from sim2real_kit import viz

    held = regions["heldout"].samples
    shown = {labels.get(k, k): first[k] for k in ("real", "physical", "stage1", "random") if k in first}
    figs = {
        "heldout_histograms": viz.residual_histograms(
            held.cad, shown, range_mm=15, title=f"CAD − depth on the held-out object {name} ({len(frames.refs)} frames)"
        )
    }
    ys, xs = np.nonzero(frames.object_mask(holdout_id)[0])
    if ys.size:
        H, W = frames.cad.shape[-2:]
        top, bottom = max(int(ys.min()) - 12, 0), min(int(ys.max()) + 13, H)
        left, right = max(int(xs.min()) - 12, 0), min(int(xs.max()) + 13, W)
        win = (0, slice(top, bottom), slice(left, right))
        maps = {"CAD": frames.cad[win], **{lbl: d[win] for lbl, d in shown.items()}}
        figs["heldout_panels"] = viz.depth_panels(
            maps, cad=held.cad[win], residual_of=tuple(shown), limit_mm=8,
            title=f"{frames.refs[0]}: held-out object {holdout_id} ({name})",
        )  # fmt: skip
    return figs


def _summary(table, metric_keys, frames, holdout_id, name, held_px, seeds, steps, stage1, train_summary, labels,
             cfg, seconds) -> dict:  # fmt: skip
    regions: dict[str, dict] = {}
    for e in table:
        regions.setdefault(e["region"], {})[e["simulator"]] = {
            "label": labels.get(e["simulator"], e["simulator"]),
            **{k: e[k] for k in metric_keys},
            **{f"{k}_std": e[f"{k}_std"] for k in metric_keys},
            "seeds": e["n"],
            "note": e["note"],
        }
    return {
        "sensor": SENSOR,
        "source": str(frames.root),
        "frames": len(frames.refs),
        "frame_size": [frames.camera.width, frames.camera.height],
        "holdout": {"id": int(holdout_id), "name": name, "pixels": held_px},
        "seeds": list(seeds),
        "stage1": {
            "trained": bool(stage1),
            "steps": steps if stage1 else 0,
            "size": int(cfg.data.size),
            **{k: v for k, v in train_summary.items() if isinstance(v, (int, float, bool, str))},
        },
        "regions": regions,
        "w1_mm": {r: {s: v["w1_mm"] for s, v in sims.items()} for r, sims in regions.items()},
        "note": HELD_OUT_NOTE,
        "seconds": seconds,
    }


def _plain(obj):
    from sim2real_kit.benchmark import _plain as plain

    return plain(obj)


__all__ = [
    "DEFAULT_SAMPLE",
    "REGIONS",
    "RealFrames",
    "RealSampleResult",
    "HeldOutCrops",
    "resolve_sample",
    "sample_dir",
    "import_real_sample",
    "load_frames",
    "resolve_holdout",
    "region_metrics",
    "sample_summary",
    "compare_worlds",
    "baseline_simulators",
    "baseline_outputs",
    "heldout_dataset",
    "train_heldout_stage1",
    "tile_boxes",
    "simulate_tiles",
    "evaluate_real_sample",
]
