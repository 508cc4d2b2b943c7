"""The simulators of the benchmark (DESIGN §5): clean CAD, random noise, a textbook physical sensor model,
pix2pix / CycleGAN, the "w/o res" direct diffusion, the run's stages, and the real capture as the reference
row; and the one frame set (a `SampleSet` of the split) they are all run on and scored against."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sim2real_kit.camera import Camera
from sim2real_kit.config import Config
from sim2real_kit.data.layout import DepthLayout, FrameRef
from sim2real_kit.errors import ConfigError, MissingArtifactError, Sim2RealError
from sim2real_kit.geometry import cad_incidence
from sim2real_kit.run import RunFolder, SampleSet, as_run

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


def _random_from_cad(cad: np.ndarray, camera: Camera, seed: int) -> np.ndarray:
    from sim2real_kit.models.baselines import RandomPerturbation

    sim = RandomPerturbation(sigma_m=RANDOM_SIGMA_M, dropout=RANDOM_DROPOUT, seed=seed)
    return sim.simulate(np.asarray(cad, np.float32), generator=int(seed))


def _physical_from_cad(cad: np.ndarray, camera: Camera, seed: int, model: str) -> np.ndarray:
    from sim2real_kit.data.sensor import GenericSensor

    sensor = GenericSensor(model)
    rng = np.random.default_rng(int(seed))
    frames = np.asarray(cad, np.float32).reshape(-1, *np.shape(cad)[-2:])
    out = [sensor.capture(f, incidence=cad_incidence(f, camera), camera=camera, rng=rng) for f in frames]
    return np.stack(out).reshape(np.shape(cad))


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
    if name == "physical":
        model = cfg.benchmark.physical_model
        sim = _cad_driven("physical", lambda c, cam, s: _physical_from_cad(c, cam, s, model), stochastic=True)
        sim.label = f"physical ({model})"
        return sim
    if name in ("pix2pix", "cyclegan"):
        return _baseline_simulator(name, run, cfg, train_baselines, baseline_steps, progress)
    reason = available_simulators(run, split)[name]
    if reason is not None:
        raise MissingArtifactError(reason)
    if name == "direct":
        return _pipeline_simulator("direct", RunFolder(run.direct_dir), 1, cfg, split, "sim1", run.layout(cfg))
    stage = _stage_of(name)
    saved = (stage_samples or {}).get(stage)
    return _pipeline_simulator(name, run, stage, cfg, split, f"sim{stage}", run.layout(cfg), saved=saved)


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


def _pipeline_simulator(
    name, run: RunFolder, stage, cfg, split, samples_key, layout: DepthLayout, saved: SampleSet | None = None
) -> Simulator:
    """A diffusion chain as a simulator: seed 0 = the saved samples (when there are), other seeds
    re-sampled with `torch.Generator().manual_seed(seed)`."""
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

    return Simulator(
        name,
        run=run_seed,
        stochastic=True,
        train_samples=run.samples_dir(stage, "train") if run.has_samples(stage, "train") else None,
        train_key=samples_key,
    )


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
