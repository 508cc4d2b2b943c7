"""The benchmark's downstream task (paper Sec. 4.2): networks trained on each simulator's output for the
benchmark split's scenes (which no simulator trained on), tested on the real captures of the val split;
object masks from the CAD's instance ids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sim2real_kit.benchmark.simulators import (
    Simulator,
)
from sim2real_kit.camera import Camera
from sim2real_kit.config import Config
from sim2real_kit.data.layout import DepthLayout, FrameRef
from sim2real_kit.errors import MissingArtifactError, Sim2RealError

# ====================================================================== 5. downstream
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


# the split whose simulated output the downstream networks train on: scenes no simulator trained on
DOWNSTREAM_SPLIT = "benchmark"


def _array_source(refs: Sequence[FrameRef], depth: np.ndarray, camera: Camera, name: str):
    """Depth source of frames already simulated: depth [F, S, S] of `refs`, all of `camera`."""
    index = {r: i for i, r in enumerate(refs)}

    def source(ref: FrameRef):
        return depth[index[ref]], camera

    source.__name__ = name
    return source


def _simulated_objects(name, sim: Simulator, layout: DepthLayout, cfg: Config, masks: str, kw: dict):
    """The object set of a simulator's output on the benchmark split (`from_layout`, else `from_cad` on the
    evaluation crops), or why there is none (a string)."""
    from sim2real_kit import downstream as ds
    from sim2real_kit.data.dataset import eval_box

    size, crop = cfg.data.size, cfg.data.eval_crop
    if sim.from_layout is not None:
        refs = layout.frames(DOWNSTREAM_SPLIT)
        try:
            depth = np.asarray(sim.from_layout(layout, refs, size, crop, cfg.seed), dtype=np.float32)
        except MissingArtifactError as e:
            return f"downstream: {e}"
        box = eval_box(layout.camera, crop)
        source = _array_source(refs, depth, layout.camera.crop(*box).resize(size, size), name)
    elif sim.from_cad is not None:
        fn = sim.from_cad

        def frame_fn(cad, cam, rng, fn=fn):
            return fn(cad[None], cam, int(rng.integers(2**31)))[0]

        source = ds.simulator_depth_source(layout, frame_fn, size=size, eval_crop=crop, seed=cfg.seed, name=name)
    else:
        return f"downstream: no output of this simulator on the {DOWNSTREAM_SPLIT} split (no from_layout / from_cad)"
    try:
        objects = ds.extract_objects(layout, DOWNSTREAM_SPLIT, source, name=name, instances=masks, **kw)
    except Sim2RealError as e:
        return f"downstream: {e}"
    if len(objects) == 0:
        return f"downstream: no object with enough points in its {DOWNSTREAM_SPLIT}-split output"
    return objects


def run_benchmark_downstream(
    sims: Mapping[str, Simulator],
    layout: DepthLayout,
    cfg: Config,
    split: str,
    seeds: Sequence[int],
    steps: int,
    progress: bool = False,
) -> tuple[list[dict], dict[str, str]]:
    """Downstream task (DESIGN §5.4) through `downstream.run_downstream`, without leaks (paper Sec. 4.2, "Why not
    perform simulation on LASA synthetic data"): each simulator turns the CAD of the **benchmark split** — scenes
    no simulator trained on — into depth (`Simulator.from_layout`: the physical model at the sensor's native
    resolution, a diffusion chain's saved benchmark samples or the chain itself; else `from_cad` on the
    evaluation crops: CAD, random, the GANs), cut into per-object partial clouds with the **CAD's instance ids**;
    networks trained from scratch on them are tested on the real captures of `split` (val). "real" (the upper
    bound, and the few-shot pool) is the benchmark split's real captures, model-size crop, with their own labels.
    A dataset without a benchmark split (made before it) raises Sim2RealError: the task does not fall back to
    the train split, whose real captures the learned simulators trained on.
    Returns (rows, {simulator: why it was left out, or "objects" on how the masks were made})."""
    from sim2real_kit import downstream as ds

    if not layout.has_split(DOWNSTREAM_SPLIT):
        raise Sim2RealError(
            "the dataset has no benchmark split (benchmark.lst): the downstream task trains on simulator output of "
            "scenes no simulator trained on, and this dataset was made before that split existed or with "
            "data.benchmark_fraction=0; re-make it (sim2real synth / import) to run the task"
        )
    if split == DOWNSTREAM_SPLIT:
        raise Sim2RealError(f"the downstream task trains on the {DOWNSTREAM_SPLIT} split: test it on another split")
    skipped: dict[str, str] = {}
    kw = dict(seed=cfg.seed, min_points=cfg.benchmark.downstream_min_points)
    test = ds.extract_objects(layout, split, "scan", instances="real", **kw)
    if len(test) == 0:
        raise Sim2RealError(f"no object of split {split!r} has enough real points for the downstream task")
    bench_refs = layout.frames(DOWNSTREAM_SPLIT)
    masks = "cad" if all(layout.has_cad_instance(r) for r in bench_refs) else "real"
    if masks == "real":
        skipped["objects"] = (
            "simulated objects cut with the real labels (_inst.png): the dataset has no CAD instance ids"
        )
    train_sets = {}
    for name, sim in sims.items():
        if name == "real":
            continue
        got = _simulated_objects(name, sim, layout, cfg, masks, kw)
        if isinstance(got, str):
            skipped[name] = got
        else:
            train_sets[name] = got
    crop = _crop_source(layout, "real", cfg.data.size, cfg.data.eval_crop)
    real_train = ds.extract_objects(layout, DOWNSTREAM_SPLIT, crop, name="real", instances="real", **kw)
    rows = ds.run_downstream(
        train_sets,
        test,
        seeds=list(seeds),
        few_shot_k=cfg.benchmark.downstream_few_shot_k,
        real_train_objects=real_train if len(real_train) else None,
        tasks=tuple(cfg.benchmark.downstream_tasks),
        steps=steps,
        progress=progress,
        num_threads=1,  # these small networks run 5-15x faster on one thread than on two busy cores
    )
    return rows, skipped


def _downstream_columns(row: Mapping) -> dict[str, float]:
    task = "cls" if row["task"] == "classification" else "rec"
    suffix = "" if row["setting"] == "zero-shot" else "_" + str(row["setting"]).replace("few-shot-", "fs")
    out = {}
    for metric, (name, scale) in DOWNSTREAM_METRICS.items():
        if metric in row and isinstance(row[metric], (int, float)):
            out[f"ds_{task}_{name}{suffix}"] = scale * float(row[metric])
    return out
