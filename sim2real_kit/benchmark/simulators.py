"""The simulators of the benchmark (DESIGN §5): clean CAD, random noise, a textbook physical sensor model,
pix2pix / CycleGAN, the "w/o res" direct diffusion, the run's stages, and the real capture as the reference
row; and the one frame set (a `SampleSet` of the split) they are all run on and scored against."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sim2real_kit.camera import Camera
from sim2real_kit.config import Config
from sim2real_kit.data.layout import SPLITS as DATA_SPLITS
from sim2real_kit.data.layout import DepthLayout, FrameRef
from sim2real_kit.errors import ConfigError, MissingArtifactError, Sim2RealError
from sim2real_kit.geometry import cad_incidence
from sim2real_kit.run import RunFolder, SampleSet, as_run

SIMULATORS = (
    "cad", "random", "physical", "pix2pix", "cyclegan", "direct", "stage1", "stage1_long", "stage2", "stage2_norew",
    "stage3", "real",
)  # fmt: skip
CONTROLS = {  # Stage-II's controls (stage2.control_run): simulator -> (control folder, stage)
    "stage1_long": ("stage1_long", 1),  # Stage-I trained on for Stage-II's steps
    "stage2_norew": ("stage2_norew", 2),  # Stage-II without the flag re-weighting, same budget
}
LABELS = {
    "cad": "CAD (w/o sim)",
    "random": "random noise",
    "physical": "physical model",
    "pix2pix": "Pix2Pix",
    "cyclegan": "CycleGAN",
    "direct": "direct diffusion (w/o res)",
    "stage1_long": "Stage-I + Stage-II's steps (control)",
    "stage2_norew": "Stage-II w/o re-weighting (control)",
    "stage1": "Stage-I",
    "stage2": "Stage-II",
    "stage3": "Stage-III",
    "real": "real (reference)",
}
REFERENCE = "real"  # the reference row: excluded from "best" in the tables
RANDOM_SIGMA_M = 0.01  # random baseline: Gaussian std (1 cm, DisCo-style perturbation)
RANDOM_DROPOUT = 0.05  # random baseline: share of valid pixels dropped


@dataclass
class Simulator:
    """A simulator of the benchmark: `run(samples, seed)` -> simulated depth [F, S, S] metres for the
    CAD frames `samples.cad` (model size, `samples.camera`), 0 = hole.

    stochastic: False when every seed gives the same output (evaluated with one seed, spread 0).
    from_cad: optional `(cad [F, H, W] metres, camera, seed) -> depth` for any CAD frames (CAD-driven
    simulators). from_layout: optional `(layout, refs, size, eval_crop, seed) -> depth [F, size, size]` for frames
    of a layout: the simulator's own way to the model-size frames of `refs` — the physical sensor model at the
    layout's native resolution and camera, then the evaluation crop / resize (`data.dataset.eval_box`,
    `crop_resize`, nearest); a diffusion chain on the evaluation crops. The downstream task runs it (else
    `from_cad` on the crops) on the benchmark split's CAD, scenes no simulator trained on."""

    name: str
    run: Callable[[SampleSet, int], np.ndarray]
    stochastic: bool = True
    label: str = ""
    from_cad: Callable[[np.ndarray, Camera, int], np.ndarray] | None = None
    from_layout: Callable[[DepthLayout, Sequence[FrameRef], int, int, int], np.ndarray] | None = None
    note: str = ""

    def __post_init__(self):
        self.label = self.label or LABELS.get(self.name, self.name)


def _random_from_cad(cad: np.ndarray, camera: Camera, seed: int) -> np.ndarray:
    from sim2real_kit.models.baselines import RandomPerturbation

    sim = RandomPerturbation(sigma_m=RANDOM_SIGMA_M, dropout=RANDOM_DROPOUT, seed=seed)
    return sim.simulate(np.asarray(cad, np.float32), generator=int(seed))


def _physical_from_cad(cad: np.ndarray, camera: Camera, seed: int, model: str) -> np.ndarray:
    """The physical sensor model on CAD frames as given (any size; e.g. the real sample's native frames)."""
    from sim2real_kit.data.sensor import GenericSensor

    sensor = GenericSensor(model)
    rng = np.random.default_rng(int(seed))
    frames = np.asarray(cad, np.float32).reshape(-1, *np.shape(cad)[-2:])
    out = [sensor.capture(f, incidence=cad_incidence(f, camera), camera=camera, rng=rng) for f in frames]
    return np.stack(out).reshape(np.shape(cad))


def physical_native(layout: DepthLayout, ref: FrameRef, seed: int, model: str) -> np.ndarray:
    """The physical sensor model on one frame's full-resolution CAD with the layout's camera [H, W] metres: what
    a real sensor of that resolution captures (Nguyen's lateral sigma is ~0.3 px at 256 px, and rounds away on
    a 64 px crop). The frame's rng is seeded from (seed, frame), independent of which other frames are run."""
    from sim2real_kit.data.sensor import GenericSensor

    cad = layout.read_depth(ref, "gt")
    rng = np.random.default_rng([int(seed), zlib.crc32(str(ref).encode())])
    incidence = cad_incidence(cad, layout.camera)
    return GenericSensor(model).capture(cad, incidence=incidence, camera=layout.camera, rng=rng)


def _physical_from_layout(
    layout: DepthLayout, refs: Sequence[FrameRef], size: int, eval_crop: int, seed: int, model: str
) -> np.ndarray:
    """`physical_native` of each frame, then the evaluation crop / resize (nearest) to size x size."""
    from sim2real_kit.data.dataset import crop_resize, eval_box

    box = eval_box(layout.camera, eval_crop)
    return np.stack([crop_resize(physical_native(layout, r, seed, model), box, size) for r in refs])


def _layout_cad(layout: DepthLayout, refs: Sequence[FrameRef], size: int, eval_crop: int) -> tuple[np.ndarray, Camera]:
    """(CAD [F, size, size] metres, camera) of frames of a layout after the evaluation crop / resize."""
    from sim2real_kit.data.dataset import crop_resize, eval_box

    box = eval_box(layout.camera, eval_crop)
    cad = np.stack([crop_resize(layout.read_depth(r, "gt"), box, size) for r in refs]).astype(np.float32)
    return cad, layout.camera.crop(*box).resize(size, size)


def _layout_driven_run(run: RunFolder, cfg: Config, name: str, from_layout) -> Callable[[SampleSet, int], np.ndarray]:
    """`Simulator.run` of a simulator with a `from_layout`: on the run's layout, for the frame set's refs, after
    checking that the frame set's CAD is the layout's evaluation crop (else its output would not match it)."""

    def run_seed(samples: SampleSet, seed: int) -> np.ndarray:
        layout = run.layout(cfg)
        size = int(samples.cad.shape[-1])
        cad, _ = _layout_cad(layout, samples.refs, size, cfg.data.eval_crop)
        diff = float(np.abs(cad - samples.cad).max()) if cad.size else 0.0
        if diff > 0.002:  # 2 mm: more than PNG rounding; another crop, size or dataset
            raise Sim2RealError(
                f"{name}: the benchmark frames are not the evaluation crops (data.eval_crop = {cfg.data.eval_crop}, "
                f"{size} px) of the run's dataset (max CAD difference {diff:.3f} m)"
            )
        return from_layout(layout, samples.refs, size, cfg.data.eval_crop, seed)

    return run_seed


def _cad_driven(name: str, fn, stochastic: bool) -> Simulator:
    return Simulator(name, run=lambda s, seed: fn(s.cad, s.camera, seed), stochastic=stochastic, from_cad=fn)


def _stage_of(name: str) -> int | None:
    return int(name[5:]) if name.startswith("stage") and name[5:].isdigit() else None


def available_simulators(run: RunFolder | str | Path, split: str = "val") -> dict[str, str | None]:
    """{name: None when the run can evaluate it, else why not} for every name of `SIMULATORS`."""
    run = as_run(run)
    out: dict[str, str | None] = {"cad": None, "random": None, "physical": None, "real": None}
    for kind in ("pix2pix", "cyclegan"):
        d = run.baseline_dir(kind)
        trained = (d / "baseline.json").is_file()
        out[kind] = None if trained else f"no trained {kind} baseline in {d} (evaluate_run(..., train_baselines=True))"
    direct = RunFolder(run.direct_dir)
    index = direct.pipeline_dir(1) / "model_index.json"
    has_direct = index.is_file() or direct.has_samples(1, split)
    out["direct"] = (
        None
        if has_direct
        else (
            f"no direct-target pipeline at {index.parent} (train Stage-I with model.target=direct into {direct.root})"
        )
    )
    for name, (folder, k) in CONTROLS.items():
        control = run.control(folder)
        out[name] = (
            None
            if control.has_samples(k, split)
            else (
                f"no {LABELS[name]} samples in {control.samples_dir(k, split)} (stage2.stage1_control / control_run + "
                "train_chain; benchmarks/bench_stage2_controls.py makes them)"
            )
        )
    for k in (1, 2, 3):
        where = run.samples_dir(k, split)
        hint = "" if run.pipeline_dir(k).is_dir() else f" (after training Stage-{k})"
        out[f"stage{k}"] = (
            None
            if run.has_samples(k, split)
            else (
                f"no Stage-{k} samples of split {split!r} ({where}); make them with: "
                f"sim2real sample --run {run.root} --split {split} --stages {k}{hint}"
            )
        )
    return {name: out[name] for name in SIMULATORS}


def make_simulator(
    name: str,
    run: RunFolder | str | Path,
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
    run = as_run(run)
    if name not in SIMULATORS:
        raise ConfigError(f"unknown simulator {name!r}; valid: {', '.join(SIMULATORS)}")
    if name == "cad":
        return _cad_driven("cad", lambda cad, cam, seed: np.array(cad, np.float32, copy=True), stochastic=False)
    if name == "real":
        return Simulator("real", run=lambda s, seed: s.real.copy(), stochastic=False)
    if name == "random":
        return _cad_driven("random", _random_from_cad, stochastic=True)
    if name == "physical":  # at the sensor's native resolution, then the eval crop / resize (`physical_native`)
        model = cfg.benchmark.physical_model

        def from_layout(layout, refs, size, eval_crop, seed):
            return _physical_from_layout(layout, refs, size, eval_crop, seed, model)

        return Simulator(
            "physical",
            run=_layout_driven_run(run, cfg, "physical", from_layout),
            stochastic=True,
            label=f"physical ({model})",
            from_cad=lambda c, cam, s: _physical_from_cad(c, cam, s, model),
            from_layout=from_layout,
        )
    if name in ("pix2pix", "cyclegan"):
        return _baseline_simulator(name, run, cfg, train_baselines, baseline_steps, progress)
    reason = available_simulators(run, split)[name]
    if reason is not None:
        raise MissingArtifactError(reason)
    if name == "direct":
        return _pipeline_simulator("direct", RunFolder(run.direct_dir), 1, cfg, split, run.layout(cfg))
    if name in CONTROLS:
        folder, k = CONTROLS[name]
        return _pipeline_simulator(name, run.control(folder), k, cfg, split, run.layout(cfg))
    stage = _stage_of(name)
    saved = (stage_samples or {}).get(stage)
    return _pipeline_simulator(name, run, stage, cfg, split, run.layout(cfg), saved=saved)


def _baseline_simulator(kind, run: RunFolder, cfg, train, steps, progress) -> Simulator:
    from sim2real_kit.models.baselines import BaselineSimulator, train_baseline

    folder = run.baseline_dir(kind)
    if not (folder / "baseline.json").is_file():
        if not train:
            raise MissingArtifactError(available_simulators(run)[kind])
        from sim2real_kit.data.dataset import PairedDepthDataset

        train_ds = PairedDepthDataset.from_config(cfg, run.layout(cfg), "train", train=True)
        train_baseline(kind, train_ds, folder, cfg, steps=steps, resume=True, progress=progress)
    sim = BaselineSimulator.load(folder, device="cuda" if torch.cuda.is_available() else "cpu")

    def from_cad(cad, camera, seed):
        return sim.simulate(np.asarray(cad, np.float32))

    return Simulator(kind, run=lambda s, seed: from_cad(s.cad, s.camera, seed), stochastic=False, from_cad=from_cad)


def chain_simulator(name: str, run: RunFolder | str | Path, stage: int, cfg: Config, split: str = "val") -> Simulator:
    """Any run folder's stage-`stage` chain as a benchmark simulator called `name` (an ablation variant, a
    control the benchmark knows no name for): its saved samples of `split` when there are, else its pipeline;
    its saved benchmark-split samples for the downstream task. Pass it in `evaluate_run(simulators=[...])`."""
    run = as_run(run)
    return _pipeline_simulator(name, run, stage, cfg, split, run.layout(cfg))


def _pipeline_simulator(
    name, run: RunFolder, stage, cfg, split, layout: DepthLayout, saved: SampleSet | None = None
) -> Simulator:
    """A diffusion chain as a simulator: seed 0 = the saved samples (when there are), other seeds
    re-sampled with `torch.Generator().manual_seed(seed)`; `from_layout` the same on any frames of the layout
    (the downstream task: the benchmark split)."""
    from sim2real_kit.simulate import load_pipeline

    if saved is None and run.has_samples(stage, split):
        saved = _load_stage_samples(run, stage, split, layout)
    has_pipeline = (run.pipeline_dir(stage) / "model_index.json").is_file()
    if saved is None and not has_pipeline:
        raise MissingArtifactError(f"{name}: neither samples nor a pipeline in {run.stage_dir(stage)}")
    cache: dict = {}

    def run_seed(samples: SampleSet, seed: int) -> np.ndarray:
        if seed == 0 and saved is not None:
            _check_same_input(saved, samples, f"{name} {split} samples", "the benchmark frames")
            return saved.sims[stage]
        if not has_pipeline:
            raise MissingArtifactError(
                f"only the saved sample: seed {seed} needs the pipeline {run.pipeline_dir(stage)}"
            )
        if "pipe" not in cache:
            cache["pipe"] = load_pipeline(run, stage, cfg)  # the run's sampling settings
        gen = torch.Generator().manual_seed(int(seed))
        out = cache["pipe"](samples.cad, camera=samples.camera, generator=gen)
        depth = out.depth.detach().cpu().numpy() if isinstance(out.depth, torch.Tensor) else np.asarray(out.depth)
        return depth.astype(np.float32)

    def from_layout(lay: DepthLayout, refs: Sequence[FrameRef], size: int, eval_crop: int, seed: int) -> np.ndarray:
        """Seed 0: the saved samples of the split holding `refs` when there are (e.g. `stage<k>/samples/benchmark/`
        made by `simulate.sample_split`); else the chain on the evaluation crops of the layout's CAD."""
        refs = list(refs)
        cad, cam = _layout_cad(lay, refs, size, eval_crop)
        if int(seed) == 0:
            for sp in (s for s in DATA_SPLITS if lay.has_split(s) and run.has_samples(stage, s)):
                if not set(refs) <= set(lay.frames(sp)):
                    continue
                got = _load_stage_samples(run, stage, sp, lay)
                index = {r: i for i, r in enumerate(got.refs)}
                if all(r in index for r in refs) and got.cad.shape[-1] == size:
                    pick = [index[r] for r in refs]
                    if float(np.abs(got.cad[pick] - cad).max()) <= 0.002:  # the same CAD crops (PNG rounding)
                        return got.sims[stage][pick]
        if not has_pipeline:
            raise MissingArtifactError(
                f"{name}: no saved samples of these frames and no pipeline at {run.pipeline_dir(stage)}; make them "
                f"with: sim2real sample --run {run.root} --split benchmark --stages {stage}"
            )
        # the same frames and seed give the same output (seeded generator): the two-sample test and the
        # downstream task both ask for the benchmark split; sample it once
        key = (str(lay.root), tuple(str(r) for r in refs), int(size), int(eval_crop), int(seed))
        if key not in cache:
            if "pipe" not in cache:
                cache["pipe"] = load_pipeline(run, stage, cfg)
            out = cache["pipe"](cad, camera=cam, generator=torch.Generator().manual_seed(int(seed)))
            depth = out.depth.detach().cpu().numpy() if isinstance(out.depth, torch.Tensor) else np.asarray(out.depth)
            cache[key] = depth.astype(np.float32)
        return cache[key].copy()

    return Simulator(name, run=run_seed, stochastic=True, from_layout=from_layout)


# ====================================================================== samples and frame sets
def _load_stage_samples(run: RunFolder, stage: int, split: str, layout: DepthLayout) -> SampleSet:
    """`RunFolder.load_samples`, after checking that samples.json says the same split."""
    from sim2real_kit.run import SAMPLES_META

    meta_path = run.samples_dir(stage, split) / SAMPLES_META
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise Sim2RealError(f"cannot read samples description: {e}", meta_path) from None
        if meta.get("split", split) != split:
            raise Sim2RealError(
                f"samples of split {meta.get('split')!r} found where split {split!r} belongs", meta_path
            )
    samples = run.load_samples(stage, split, layout)
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


def _dataset_samples(cfg: Config, split: str, layout: DepthLayout) -> SampleSet:
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


def benchmark_samples(run: RunFolder, cfg: Config, split: str, stages: Sequence[int], layout: DepthLayout):
    """(base SampleSet, {k: SampleSet}) of the stages to evaluate, checked to share one frame set and one
    CAD input. The base is the lowest evaluated stage (else the lowest stage with samples, else the
    dataset's eval crops)."""
    loaded = {k: _load_stage_samples(run, k, split, layout) for k in sorted(set(stages))}
    if loaded:
        base_k = min(loaded)
        base = loaded[base_k]
        for k, s in loaded.items():
            if k != base_k:
                _check_same_input(s, base, f"stage{k} {split} samples", f"stage{base_k}")
        return base, loaded
    for k in (1, 2, 3):
        if run.has_samples(k, split):
            return _load_stage_samples(run, k, split, layout), loaded
    return _dataset_samples(cfg, split, layout), loaded


def _scenes(refs: Sequence[FrameRef]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, r in enumerate(refs):
        out.setdefault(r.scene, []).append(i)
    return out
