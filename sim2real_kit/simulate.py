"""Running a trained chain (paper Sec. 3.5): on a run's split, paired with the real capture, for
evaluation and as the input of the next stage (`sample_split`); and on CAD alone — depth frames, a folder of
PNGs, a layout, or meshes + a camera trajectory — into a layout with point clouds and a fused mesh, the
simulated 3D data a user trains other networks on (`simulate_frames`, `simulate_folder`, `simulate_meshes`), at
the camera's resolution (overlapping model-size tiles blended during sampling, `tiling.simulate_tiled`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from sim2real_kit.camera import Camera, check_pose
from sim2real_kit.config import Config, validity_head
from sim2real_kit.data.dataset import PairedDepthDataset
from sim2real_kit.data.layout import SPLITS, DepthLayout, FrameRef
from sim2real_kit.depth import DEPTH_MAX_M, DEPTH_MIN_M, read_depth_png
from sim2real_kit.errors import ConfigError, DepthFormatError, MissingArtifactError, Sim2RealError
from sim2real_kit.holes import NO_THRESHOLD
from sim2real_kit.io import atomic_write_json
from sim2real_kit.run import RunFolder, as_run, prepare_data
from sim2real_kit.stage1 import collate, device


def load_pipeline(run: RunFolder | str | Path, stage: int, cfg: Config):
    """The saved pipeline of stages 1..`stage` of a run with the run's `sampling` section applied
    (`pipeline.sampling_options`: steps, batch, eta, precision, CUDA graph, compile, channels_last, validity
    threshold): the run's config says how to sample, not the values frozen into the pipeline when it was trained."""
    from sim2real_kit.pipeline import Sim2RealPipeline, sampling_options

    run = as_run(run)
    path = run.pipeline_dir(stage)
    if not (path / "model_index.json").is_file():
        cmd = (
            f"sim2real train --stage 1 --out {run.root}"
            if stage == 1
            else f"sim2real train --stage {stage} --run {run.root}"
        )
        raise MissingArtifactError(f"no Stage-{stage} pipeline at {path}; make it with: {cmd}")
    return Sim2RealPipeline.from_pretrained(path).set_sampling(**sampling_options(cfg)).to(device())


def sample_split(
    run: RunFolder | str | Path,
    cfg: Config,
    split: str = "val",
    stage: int = 1,
    max_frames: int | None = None,
    progress: bool = True,
) -> Path:
    """Sample every frame of `split` with stages 1..`stage` into `stage<stage>/samples/<split>/` of the run:
    `<scene>/<frame>_{gt,scan,sim1..simK}.png` at the model size (mm) beside `camera.json` (the eval crop's
    camera). The noise comes from seed `cfg.seed + 1000 * stage`. Never writes into the user's dataset.

    Stage k > 1 samples only stage k, conditioned on the stored samples of stages 1..k-1 of the same frames
    (made first where missing): one Stage-I draw per frame everywhere, so a run's Stage-I numbers agree
    between notebooks and Stage-II is paired with the Stage-I output it was conditioned on."""
    from tqdm.auto import tqdm

    run = as_run(run)
    layout = prepare_data(run, cfg, progress=False)
    pipe = load_pipeline(run, stage, cfg)
    ds = PairedDepthDataset.from_config(cfg, layout, split, train=False, max_frames=max_frames)
    if stage > 1 and not (
        run.has_samples(stage - 1, split)
        and all(run.sample_path(stage - 1, split, r.scene, r.frame, f"sim{stage - 1}").is_file() for r in ds.refs)
    ):
        sample_split(run, cfg, split, stage - 1, max_frames, progress)
    cam = Camera(*[float(v) for v in ds[0]["camera"]], cfg.data.size, cfg.data.size)
    gen = torch.Generator().manual_seed(cfg.seed + 1000 * stage)
    bs = cfg.sampling.batch_size
    run.start_samples(stage, split)
    bar = tqdm(total=len(ds), desc=f"sample stage{stage} {split}", disable=not progress)
    for start in range(0, len(ds), bs):
        items = [ds[i] for i in range(start, min(start + bs, len(ds)))]
        # stages 1..stage-1 as stored (1 mm PNG steps, as Stage-II's training condition reads them); None for Stage-I
        given = [
            np.stack(
                [read_depth_png(run.sample_path(stage - 1, split, it["scene"], it["frame"], f"sim{k}")) for it in items]
            )
            for k in range(1, stage)
        ] or None
        out = pipe(collate(items)["cad"][:, 0], generator=gen, return_all_stages=True, given_stages=given)
        stages_out = [s.cpu().numpy() for s in out.stages]
        run.write_samples(
            stage,
            split,
            [
                {
                    "scene": it["scene"],
                    "frame": it["frame"],
                    "cad": it["cad"][0].numpy(),
                    "real": it["real"][0].numpy(),
                    "sims": [s[j] for s in stages_out],
                }
                for j, it in enumerate(items)
            ],
            cam,
        )
        bar.update(len(items))
    bar.close()
    run.finish_samples(stage, split, len(ds), cfg.data.size)
    return run.samples_dir(stage, split)


def sample_validity(
    run: RunFolder | str | Path, cfg: Config, split: str, seed: int, max_frames: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stage-I of a `data.holes: model` run on `split`, sampled once with no validity threshold: (cad, real,
    depth, p_valid), each [N, S, S] (metres; P(valid) in [0, 1]), so that any threshold applies afterwards
    (`np.where(p_valid < tau, 0, depth)` is the pipeline's output at `sampling.validity_threshold = tau`)."""
    run = as_run(run)
    if validity_head(cfg):
        raise ConfigError(f"{run.root}: model.validity = 'head': {NO_THRESHOLD}")
    if cfg.data.holes != "model":
        raise ConfigError(f"{run.root}: data.holes = {cfg.data.holes!r}; a validity threshold needs data.holes=model")
    pipe = load_pipeline(run, 1, cfg).set_sampling(validity_threshold=0.0)
    layout = prepare_data(run, cfg, progress=False)
    ds = PairedDepthDataset.from_config(cfg, layout, split, train=False, max_frames=max_frames)
    gen = torch.Generator().manual_seed(seed)
    parts: list[list[np.ndarray]] = [[], [], [], []]
    for start in range(0, len(ds), cfg.sampling.batch_size):
        batch = collate([ds[i] for i in range(start, min(start + cfg.sampling.batch_size, len(ds)))])
        out = pipe(batch["cad"][:, 0], generator=gen)
        for part, x in zip(parts, (batch["cad"][:, 0], batch["real"][:, 0], out.depth, out.validity)):
            part.append(np.asarray(x, np.float32))
    return tuple(np.concatenate(p) for p in parts)


def calibrate_validity_threshold(
    run: RunFolder | str | Path, cfg: Config, split: str = "train", max_frames: int | None = None
) -> dict:
    """The `sampling.validity_threshold` whose generated hole rate on `split` (default: the train split, never
    the scored one) matches the real captures' there (issue 20: thresholded at 0.5, the EMA hole model
    under-generates holes at CAD edges by 19-30 % in 5/5 demo seeds; docs/results.md). Returns
    `match_hole_rate`'s dict of that split's draw (seed `cfg.seed + 1001`). ConfigError with a validity head
    (`model.validity: head`): its holes are drawn, there is no threshold."""
    return match_hole_rate(*sample_validity(run, cfg, split, cfg.seed + 1000 + 1, max_frames))


def match_hole_rate(
    cad: np.ndarray, real: np.ndarray, depth: np.ndarray, prob: np.ndarray, region: np.ndarray | None = None
) -> dict:
    """The threshold (0.05-0.95 in steps of 0.01) whose hole rate, `np.where(prob < t, 0, depth)` over the CAD
    pixels, is nearest the real maps' (arrays [N, H, W] as `sample_validity` returns them). `region` [N, H, W]
    bool: count only its CAD pixels (e.g. a real sample's training objects). Returns {"threshold", "real_rate",
    "rate" (generated at the threshold), "rate_at_0.5", "frames", "pixels"}; rates are shares of CAD pixels."""
    from sim2real_kit.metrics import depth_edges, hole_rates

    if region is not None:
        region = np.asarray(region, bool)
        if region.shape != np.shape(cad):
            raise ConfigError(f"hole-rate region of shape {region.shape} for CAD maps of shape {np.shape(cad)}")
        cad = np.where(region, cad, 0.0)
    pixels = int(np.count_nonzero(np.asarray(cad) > 0))
    if not pixels:
        raise ConfigError("no CAD pixel to match the hole rate on (an empty region)")
    edges = depth_edges(cad, 0.05, 1)
    target = hole_rates(cad, real, edge_mask=edges)["all"]
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    rates = np.array([hole_rates(cad, np.where(prob < t, 0.0, depth), edge_mask=edges)["all"] for t in grid])
    best = int(np.argmin(np.abs(rates - target)))
    return {
        "threshold": float(grid[best]),
        "real_rate": float(target),
        "rate": float(rates[best]),
        "rate_at_0.5": float(rates[int(np.argmin(np.abs(grid - 0.5)))]),
        "frames": len(cad),
        "pixels": pixels,
    }


# The fastest sampling path measured to hold quality on a trained model (docs/results_gpu.md, "The validity head
# at `small`...": `compiled-graph`, 2.2-2.3x autocast eager at 4-20 DDIM steps, W1 within 0.1 mm and the
# two-sample AUC within the discriminators' spread): the default of the sampling-only command `sim2real simulate`
# on CUDA (`fast="auto"`), where its ~1-2 min compile pays back over a trajectory. Training's validation and
# `sim2real sample` keep the run's `sampling` section.
FAST_SAMPLING = {"compile": True}
FAST_MODES = ("auto", "on", "off")


def fast_sampling(mode: str, dev: str | torch.device) -> dict:
    """The `set_sampling` options of `FAST_SAMPLING` if `mode` is "on", or "auto" on a CUDA device; else {}."""
    if mode not in FAST_MODES:
        raise Sim2RealError(f"fast sampling = {mode!r}; allowed: {', '.join(FAST_MODES)}")
    on = mode == "on" or (mode == "auto" and torch.device(dev).type == "cuda")
    return dict(FAST_SAMPLING) if on else {}


def load_any_pipeline(pipeline: Path, fast: str = "off"):
    """A saved pipeline folder as it is, or a run folder's last stage with the run's sampling settings; then
    `fast_sampling(fast, device)` on top (`sim2real simulate` passes "auto")."""
    from sim2real_kit.pipeline import Sim2RealPipeline

    if (pipeline / "model_index.json").is_file():
        pipe = Sim2RealPipeline.from_pretrained(pipeline).to(device())
    else:
        run = RunFolder(pipeline)
        last = max((int(p.name[5:]) for p in pipeline.glob("stage[0-9]*") if (p / "pipeline").is_dir()), default=0)
        if not last:
            raise MissingArtifactError(f"{pipeline} holds no saved pipeline (stageN/pipeline/model_index.json)")
        if run.has_config():
            pipe = load_pipeline(run, last, run.load_config())
        else:
            pipe = Sim2RealPipeline.from_pretrained(run.pipeline_dir(last)).to(device())
    return pipe.set_sampling(**fast_sampling(fast, pipe.device))


def simulate_frames(
    pipe,
    cad_frames: list[np.ndarray],
    camera: Camera,
    refs: list[FrameRef],
    poses,
    out_dir,
    stages: int | None = None,
    seed: int = 0,
    fuse: bool = True,
    progress: bool = True,
    native: bool = True,
    overlap: int | None = None,
    tile_batch: int | None = None,
    whole: bool = False,
) -> DepthLayout:
    """Simulate captured depth for CAD frames [H, W] metres (one camera) and write it as a layout: `_gt` = the
    CAD, `_scan` = the simulated depth, poses as given (camera-to-world); plus `points/<scene>/<frame>.ply`
    (back-projected, world frame) and, with `fuse`, a TSDF mesh per scene `meshes/<scene>/simulated.ply` —
    training data for 3D networks elsewhere.

    native (default): at the camera's resolution [H, W], the pipeline run on overlapping model-size tiles of the
    CAD sampled as one sample and blended (`tiling.simulate_tiled`, `overlap` px, default a quarter of the
    tile; no tile border shows). The tiles are at the camera's pixel scale: a model trained on frames resized to
    its size (the kit's Stage-I: a crop of side min(H, W) / zoom resized) saw coarser pixels than it is given
    here. native=False: the model size [S, S] (the eval crop of `Sim2RealPipeline.preprocess`, resized).
    tile_batch (native): the most tiles per pipeline call, whole frames grouped (a GPU: e.g. 140, four 640 x 480
    frames of a 128-px model; None: one frame per call, the CPU default). whole (native): no tiles, each frame in one
    fully convolutional pass (`tiling.simulate_full`; whether a model holds quality so: experiments/full_frame.py)."""
    from tqdm.auto import tqdm

    from sim2real_kit.fusion import fuse_frames, save_mesh, save_point_cloud
    from sim2real_kit.tiling import simulate_full, simulate_tiled

    out_dir = Path(out_dir)
    gen = torch.Generator().manual_seed(seed)
    sims, cads, model_cam = [], [], camera
    if native:  # frames per simulate_tiled call: 1 (the default), or 16 grouped into calls of tile_batch tiles
        step = 16 if tile_batch else 1
        bar = tqdm(total=len(cad_frames), desc="simulate", disable=not progress)
        for start in range(0, len(cad_frames), step):
            chunk = np.stack([np.asarray(c, dtype=np.float32) for c in cad_frames[start : start + step]])
            if whole:
                sims += list(simulate_full(pipe, chunk, None, gen, stages=stages))
            else:
                sims += list(
                    simulate_tiled(pipe, chunk, None, gen, overlap=overlap, stages=stages, tile_batch=tile_batch)
                )
            cads += list(chunk)
            bar.update(len(chunk))
        bar.close()
    else:
        for cad in tqdm(cad_frames, desc="simulate", disable=not progress):
            out = pipe(cad, camera=camera, stages=stages, generator=gen)
            sims.append(np.asarray(out.depth[0], dtype=np.float32))
            cads.append(np.asarray(out.cad[0], dtype=np.float32))
            model_cam = out.camera
    if sims and not any((s > 0).any() for s in sims):
        raise Sim2RealError(
            f"the simulation came back empty (every pixel a hole) for all {len(sims)} frames; CAD median "
            f"{float(np.median(np.concatenate([c[c > 0] for c in cads] or [np.zeros(1)]))):.3f} m: check the CAD's "
            "depth unit and that the pipeline was trained on this depth range"
        )
    meta = {
        "source": "simulated",
        "stages": stages or pipe.num_stages,
        "splits": {"unit": "frame", "rule": "every 5th frame in val.lst"},  # scenes in both lists: declared
        "resolution": "model size (eval crop resized)"
        if not native
        else "camera (whole frames, one pass each)"
        if whole
        else "camera (overlapping tiles, blended)",
    }
    layout = DepthLayout.create(out_dir, model_cam, meta=meta)
    for ref, cad, sim, pose in zip(refs, cads, sims, poses):
        layout.write_frame(ref, cad, sim, pose)
        save_point_cloud(model_cam.backproject(sim, pose)[sim > 0], out_dir / "points" / ref.scene / f"{ref.frame}.ply")
    # every 5th frame in val.lst (at least one), the rest in train.lst: the layout validates as is
    val = set(refs[4::5] or refs[-1:])
    layout.write_split("train", [r for r in refs if r not in val] or refs)
    layout.write_split("val", [r for r in refs if r in val])
    if fuse:
        for scene in sorted({r.scene for r in refs}):
            idx = [i for i, r in enumerate(refs) if r.scene == scene]
            mesh = fuse_frames([sims[i] for i in idx], [poses[i] for i in idx], model_cam, progress=False)
            save_mesh(mesh, layout.mesh_path(scene, "simulated"))
    resolution = [model_cam.width, model_cam.height]
    atomic_write_json(
        out_dir / "simulate.json",
        {"frames": len(refs), "stages": stages or pipe.num_stages, "fused": fuse, "native": native, "size": resolution},
    )
    return layout


DEPTH_UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "0.1mm": 0.0001}  # metres per PNG count, by name


def parse_depth_unit(unit: str | float) -> float:
    """Metres per count of a uint16 depth PNG: a name of `DEPTH_UNITS` ("mm", "0.1mm" as YCB-Video, ...) or
    a number (e.g. 0.00025 for RealSense's default scale)."""
    if isinstance(unit, (int, float)):
        value = float(unit)
    elif str(unit).strip().lower() in DEPTH_UNITS:
        return DEPTH_UNITS[str(unit).strip().lower()]
    else:
        try:
            value = float(unit)
        except ValueError:
            raise ConfigError(
                f"depth unit {unit!r} is neither a number (metres per count) nor one of {', '.join(DEPTH_UNITS)}"
            ) from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"depth unit {unit!r} must be a positive number of metres per count")
    return value


def check_cad_range(cads: list[np.ndarray], source: str, unit_m: float | None = None) -> None:
    """Refuse CAD depth that the model cannot have been trained on: fewer than half of the non-zero pixels
    within the normalisation's range (`DEPTH_MIN_M`..`DEPTH_MAX_M`, metres), which is what a wrong unit
    gives (YCB-Video's 0.1 mm PNGs read as mm are 10x too far). The error names the unit and the range, and
    the unit that would bring the median depth into it."""
    values = np.concatenate([c[c > 0].ravel() for c in cads]) if cads else np.zeros(0, np.float32)
    if values.size == 0:
        raise DepthFormatError("every CAD pixel is 0 (no depth): nothing to simulate", source)
    inside = float(((values >= DEPTH_MIN_M) & (values <= DEPTH_MAX_M)).mean())
    if inside >= 0.5:
        return
    median = float(np.median(values))
    read = f" read with a depth unit of {unit_m:g} m per count" if unit_m is not None else ""
    msg = (
        f"the CAD depth{read} has a median of {median:.3f} m and only {100 * inside:.1f} % of its pixels inside "
        f"the range the model is trained on ({DEPTH_MIN_M}-{DEPTH_MAX_M} m)"
    )
    if unit_m is not None:
        fits = [name for name, u in DEPTH_UNITS.items() if DEPTH_MIN_M <= median / unit_m * u <= DEPTH_MAX_M]
        msg += f"; is the unit right? (--depth-unit {' or '.join(fits)} would put the median inside)" if fits else ""
    raise DepthFormatError(msg, source)


def simulate_folder(
    pipeline: str | Path,
    cad_dir: str | Path,
    out_dir: str | Path,
    stages: int | None = None,
    progress: bool = True,
    depth_unit: str | float = "mm",
    native: bool = True,
    overlap: int | None = None,
    tile_batch: int | None = None,
    whole: bool = False,
    fast: str = "off",
) -> DepthLayout:
    """Simulate every CAD depth PNG under `cad_dir`: a `lasa_depth` layout root (its poses, intrinsics and
    depth unit are used, scenes fused), or any folder of uint16 depth PNGs in `depth_unit` (metres per count
    or a name of `DEPTH_UNITS`; default mm), with `intrinsics.json` beside them (else the LASA camera),
    identity poses and no fusion. CAD outside the model's depth range is refused (`check_cad_range`), and so
    is a simulation that comes back empty. See `simulate_frames` for the output (native: the camera's resolution)."""
    from sim2real_kit.data.layout import read_pose

    pipe = load_any_pipeline(Path(pipeline), fast)
    cad_dir = Path(cad_dir)
    if (cad_dir / "lasa_depth").is_dir():  # a layout: simulate its CAD frames with their poses
        layout = DepthLayout(cad_dir)
        refs = sorted({r for split in SPLITS if layout.has_split(split) for r in layout.frames(split)})
        cads = [layout.read_depth(r, "gt") for r in refs]
        check_cad_range(cads, str(cad_dir))
        poses = [layout.read_pose(r) for r in refs]
        return simulate_frames(
            pipe,
            cads,
            layout.camera,
            refs,
            poses,
            out_dir,
            stages,
            progress=progress,
            native=native,
            overlap=overlap,
            tile_batch=tile_batch,
            whole=whole,
        )
    files = sorted(p for p in cad_dir.rglob("*.png") if not p.name.endswith(("_scan.png", "_rgb.png", "_inst.png")))
    if not files:
        raise MissingArtifactError(f"no CAD depth PNGs under {cad_dir}")
    intr = cad_dir / "intrinsics.json"
    unit_m = parse_depth_unit(depth_unit)
    cads = [read_depth_png(f, unit_m) for f in files]
    check_cad_range(cads, str(cad_dir), unit_m)
    camera = Camera.load_json(intr) if intr.is_file() else Camera.lasa()
    for f, cad in zip(files, cads):
        if cad.shape != (camera.height, camera.width):
            raise MissingArtifactError(
                f"{f}: {cad.shape[1]}x{cad.shape[0]} depth but the camera ({intr if intr.is_file() else 'LASA default'}) "
                f"is {camera.width}x{camera.height}; put the right intrinsics.json beside the PNGs"
            )
    refs = [
        FrameRef("cad", str(f.relative_to(cad_dir).with_suffix("")).replace("/", "_").removesuffix("_gt"))
        for f in files
    ]
    poses = []
    for f in files:
        pose_file = f.with_name(f.name.removesuffix(".png").removesuffix("_gt") + ".txt")
        poses.append(read_pose(pose_file) if pose_file.is_file() else np.eye(4))
    known = all(f.with_name(f.name.removesuffix(".png").removesuffix("_gt") + ".txt").is_file() for f in files)
    return simulate_frames(
        pipe,
        cads,
        camera,
        refs,
        poses,
        out_dir,
        stages,
        fuse=known,
        progress=progress,
        native=native,
        overlap=overlap,
        tile_batch=tile_batch,
        whole=whole,
    )


def simulate_meshes(
    pipeline: str | Path,
    mesh: str | Path,
    trajectory,
    out_dir: str | Path,
    camera: Camera | None = None,
    stages: int | None = None,
    progress: bool = True,
    native: bool = True,
    overlap: int | None = None,
    tile_batch: int | None = None,
    whole: bool = False,
    fast: str = "off",
) -> DepthLayout:
    """CAD meshes + a camera trajectory -> rendered CAD depth -> simulated depth in a layout, point clouds
    and a fused mesh (`simulate_frames`). `trajectory`: [N, 4, 4] camera-to-world poses, or a text file of
    N x 16 numbers (one row-major 4x4 per line); `camera` defaults to the LASA ARKit camera."""
    from sim2real_kit.data.render import SceneRenderer
    from sim2real_kit.fusion import load_mesh

    if isinstance(trajectory, (str, Path)):
        rows = np.loadtxt(trajectory, dtype=np.float64, ndmin=2)
        if rows.shape[1] != 16:
            raise MissingArtifactError(
                f"{trajectory}: each line must hold one row-major 4x4 pose (16 numbers), got {rows.shape[1]}"
            )
        trajectory = rows.reshape(-1, 4, 4)
    poses = [check_pose(p, f"trajectory pose {i}") for i, p in enumerate(np.asarray(trajectory))]
    camera = camera or Camera.lasa()
    renderer = SceneRenderer({1: load_mesh(mesh)})
    cads = [renderer.render(camera, pose, full=False).depth.astype(np.float32) for pose in poses]
    scene = Path(mesh).stem
    refs = [FrameRef(scene, f"{i:04d}") for i in range(len(poses))]
    pipe = load_any_pipeline(Path(pipeline), fast)
    return simulate_frames(
        pipe,
        cads,
        camera,
        refs,
        poses,
        out_dir,
        stages,
        progress=progress,
        native=native,
        overlap=overlap,
        tile_batch=tile_batch,
        whole=whole,
    )
