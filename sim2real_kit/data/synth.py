"""Generate a paired CAD / real depth dataset of the procedural world in the `lasa_depth` layout.

DESIGN §2: every later step reads the same layout whether the pairs come from LASA or from here.
Per scene (`scenes.make_scene`) and frame:

- `<frame>_gt.png`   CAD depth: ray-cast CAD furniture (+ room when `cad_includes_room`), 0 = none;
- `<frame>_scan.png` captured depth: the *real* geometry ray-cast, then `sensor.SensorModel`;
- `<frame>_rgb.png`  a shaded colour-by-instance image of the real geometry (for coloured fusions);
- `<frame>_inst.png` instance ids of the real geometry (uint16; ids as in `scenes.py`);
- `lasa_pose/<scene>/<frame>.txt` camera-to-world pose;
- `meshes/<scene>/{cad,real}.ply` world-frame scene meshes (vertex colour red = instance id / 255)
  and `meshes/<scene>/scene.json` (instance table, room, object poses and parameters);
- `intrinsics.json`, `dataset.yaml` (every generator and sensor parameter, the seed), `train.lst` /
  `val.lst` / `benchmark.lst` split by scene (`scene_splits`: benchmark = scenes no simulator trains on).

`world="sensor_only"` (`scenes.WORLDS`) makes the real geometry the CAD geometry itself (no bevels,
clutter, misplacement, baseboards or rug): the scan is `SensorModel` applied to the CAD geometry, so
the residual is the sensor's alone. The CAD depth, poses and layout are those of the default world
("procedural") for the same seed. dataset.yaml records `world` when it is not the default; a
dataset.yaml without the key is of the procedural world (so the default world's files, dataset.yaml
included, are byte-identical to those written before the option existed, and older datasets resume).

Scene i is generated from the seed sequence (seed, i), so a dataset is deterministic for a seed and
scene i does not depend on how many scenes are asked for. Each file is written atomically; a scene
is marked done after all its files, and a re-run skips done scenes (resume after an interruption,
or extension with more scenes). A folder holding a dataset with other parameters is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim2real_kit.camera import LASA_FX, LASA_WIDTH, Camera
from sim2real_kit.data.scenes import CLASS_NAMES, ROOM_ID_MIN, Scene, SceneConfig, check_world, make_scene
from sim2real_kit.data.sensor import SensorConfig, SensorModel
from sim2real_kit.errors import ConfigError

GENERATOR_VERSION = 1
DEPTH_UNIT_M = 0.001
PNG_COMPRESS_LEVEL = 1  # zlib level of the frame PNGs (speed: synthesis is PNG-bound at PIL's default 6)

# base colours (RGB 0-255) of CLASS_NAMES for the shaded rgb image
_CLASS_COLOURS = np.array(
    [
        [0, 0, 0],
        [230, 140, 40],
        [150, 95, 50],
        [60, 110, 200],
        [150, 80, 170],
        [70, 160, 90],
        [220, 200, 60],
        [150, 135, 120],
        [205, 205, 200],
        [235, 235, 235],
    ],
    dtype=np.float32,
)


def synth_camera(width: int = 256, height: int = 192) -> Camera:
    """The ARKit-like camera: LASA's horizontal field of view at width x height, square pixels, centred.

    256x192 gives exactly `Camera.lasa()` (fx = fy = 211.9489)."""
    if width == LASA_WIDTH and height == 192:
        return Camera.lasa()
    f = LASA_FX * width / LASA_WIDTH
    return Camera(f, f, width / 2, height / 2, int(width), int(height))


def scene_id(index: int) -> str:
    return f"s{index:04d}"


def frame_ids(frames: int) -> list[str]:
    digits = max(3, len(str(frames - 1)))
    return [f"{f:0{digits}d}" for f in range(frames)]


def scene_seed(seed: int, index: int) -> int:
    """The seed of scene `index` of a dataset of seed `seed` (independent of the scene count)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint32)[0])


def shade_rgb(render, scene: Scene) -> np.ndarray:
    """uint8 [H, W, 3] image: class colour (varied per instance, darker for dark materials) x headlight."""
    inst = render.instance
    lut = np.zeros((max(scene.instances) + 1, 3), dtype=np.float32)
    for i, info in scene.instances.items():
        col = _CLASS_COLOURS[CLASS_NAMES.index(info["category"])].copy()
        if i < ROOM_ID_MIN:
            col *= 0.8 + 0.4 * np.random.default_rng(i).random(3).astype(np.float32)
        if info["material"] == "dark":
            col *= 0.3
        lut[i] = col
    shade = 0.35 + 0.65 * np.cos(render.incidence)
    rgb = lut[inst] * shade[..., None]
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def _check_count(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def write_frame(lay, ref, cad, real, pose, rgb, instance, compress_level: int = PNG_COMPRESS_LEVEL) -> None:
    """`DepthLayout.write_frame` with fast PNG compression (zlib level 1: 4x faster than PIL's default 6,
    files about 1.4x larger): the same paths, units and atomic tmp + rename per file."""
    from PIL import Image

    from sim2real_kit.data.layout import write_pose
    from sim2real_kit.depth import depth_to_uint16
    from sim2real_kit.io import atomic_path

    images = {
        "gt": depth_to_uint16(cad, lay.depth_unit_m, name=str(lay.depth_path(ref, "gt"))),
        "scan": depth_to_uint16(real, lay.depth_unit_m, name=str(lay.depth_path(ref, "scan"))),
        "rgb": np.asarray(rgb, dtype=np.uint8),
        "inst": np.asarray(instance).astype(np.uint16),
    }
    for kind, arr in images.items():
        with atomic_path(lay.depth_path(ref, kind)) as tmp:
            Image.fromarray(arr).save(tmp, format="PNG", compress_level=compress_level)
    write_pose(lay.pose_path(ref), pose)


def write_scene(lay, scene: Scene, sid: str, sensor: SensorModel, seed: int, index: int, on_frame=None) -> None:
    """Render, capture and write every frame of `scene`, its meshes and scene.json, then mark it done."""
    import open3d as o3d

    from sim2real_kit.data.layout import FrameRef
    from sim2real_kit.io import atomic_path, atomic_write_json

    fids = frame_ids(scene.n_frames)
    for f, fid in enumerate(fids):
        cad = scene.render(f, "cad", full=False)
        real = scene.render(f, "real")
        cap = sensor.capture(real, scene.camera, _frame_rng(seed, index, f))
        write_frame(
            lay,
            FrameRef(sid, fid),
            cad=cad.depth,
            real=cap.depth,
            pose=scene.poses[f],
            rgb=shade_rgb(real, scene),
            instance=real.instance,
        )
        if on_frame is not None:
            on_frame()
    for kind in ("cad", "real"):
        with atomic_path(lay.mesh_path(sid, kind)) as tmp:
            if not o3d.io.write_triangle_mesh(
                str(tmp),
                scene.mesh(kind),
                write_ascii=False,
                compressed=False,
                write_vertex_normals=False,
                print_progress=False,
            ):
                raise ConfigError(f"open3d could not write the {kind} mesh", lay.mesh_path(sid, kind))
    info = scene.info()
    info.update(scene=sid, scene_index=index, frames=fids)
    atomic_write_json(lay.scene_info_path(sid), _plain(info))
    lay.mark_scene_done(sid)


def _worker(args) -> str:
    """One scene in a worker process (used when workers > 1)."""
    root, index, seed, frames, camera_dict, gen_dict, sensor_dict, world = args
    from sim2real_kit.data.layout import DepthLayout

    lay = DepthLayout(root)
    gen = SceneConfig.from_dict(gen_dict)
    scene = make_scene(scene_seed(seed, index), frames, Camera.from_dict(camera_dict), gen, world=world)
    scene.render_threads = 1
    write_scene(lay, scene, scene_id(index), SensorModel(SensorConfig.from_dict(sensor_dict)), seed, index)
    return scene_id(index)


def scene_splits(
    n_scenes: int, seed: int, val_fraction: float, benchmark_fraction: float = 0.0
) -> dict[str, list[str]]:
    """{"train", "val", "benchmark": scene ids}: disjoint, covering all `n_scenes`. Each scene gets a draw that
    depends only on (seed, index); the `data.layout.split_sizes` counts go by lowest draw: the lowest to val
    (exactly `split_scenes`'s val), the next to benchmark, the rest to train. Extending a dataset moves few
    scenes; benchmark is empty when there are too few scenes to keep one in train."""
    from sim2real_kit.data.layout import split_sizes

    n_val, n_bench = split_sizes(n_scenes, val_fraction, benchmark_fraction)
    draws = np.array([np.random.default_rng([int(seed), i, 0x5B17]).random() for i in range(n_scenes)])
    order = np.argsort(draws, kind="stable").tolist()
    val, bench = set(order[:n_val]), set(order[n_val : n_val + n_bench])
    ids = [scene_id(i) for i in range(n_scenes)]
    return {
        "train": [s for i, s in enumerate(ids) if i not in val and i not in bench],
        "val": [s for i, s in enumerate(ids) if i in val],
        "benchmark": [s for i, s in enumerate(ids) if i in bench],
    }


def split_scenes(n_scenes: int, seed: int, val_fraction: float) -> tuple[list[str], list[str]]:
    """(train, val) scene ids without a benchmark split: the round(n * val_fraction) scenes (at least 1, at
    most n - 1) of lowest per-scene draw go to val (`scene_splits` with benchmark_fraction 0)."""
    splits = scene_splits(n_scenes, seed, val_fraction)
    return splits["train"], splits["val"]


def write_scene_splits(lay, n_scenes: int, frames: int, seed: int, val_fraction: float, benchmark_fraction: float):
    """Write train.lst / val.lst / benchmark.lst of a synthesized dataset (`scene_splits`); a benchmark.lst of an
    earlier run is removed when there is no benchmark split now (benchmark_fraction 0 or too few scenes)."""
    import warnings

    from sim2real_kit.data.layout import FrameRef

    splits = scene_splits(n_scenes, seed, val_fraction, benchmark_fraction)
    fids = frame_ids(frames)
    for split, scenes in splits.items():
        if scenes:
            lay.write_split(split, [FrameRef(s, f) for s in scenes for f in fids])
        else:
            lay.remove_split(split)
    if benchmark_fraction > 0 and not splits["benchmark"]:
        warnings.warn(
            f"{n_scenes} scenes are too few for a benchmark split (benchmark_fraction {benchmark_fraction}: "
            "train keeps at least one scene): the dataset has none; its benchmark's downstream task will not run",
            stacklevel=3,
        )
    return splits


def synthesize(
    out_dir: str | Path,
    scenes: int,
    frames: int,
    seed: int = 0,
    width: int = 256,
    height: int = 192,
    sensor: SensorConfig | dict | None = None,
    generator: SceneConfig | dict | None = None,
    progress: bool = True,
    val_fraction: float = 0.25,
    workers: int = 1,
    benchmark_fraction: float = 0.25,
    on_scene_done: Callable[[str], None] | None = None,
    world: str = "procedural",
):
    """Write `scenes` x `frames` paired frames to `out_dir` in the lasa_depth layout; returns the DepthLayout.

    `sensor`: the capture model (default `SensorConfig()`; a dict overrides its fields by name);
    `generator`: room / furniture / camera parameters (default `SceneConfig()`; or a dict of overrides);
    `workers` > 1 renders scenes in that many processes
    (same files, any worker count). `world`: "procedural" (real geometry differs from the CAD) or
    "sensor_only" (real geometry = CAD geometry: the residual is the sensor's effects only).
    `on_scene_done(scene_id)` is called after each finished scene.
    `val_fraction` / `benchmark_fraction`: shares of scenes in val.lst / benchmark.lst (`scene_splits`; the
    benchmark scenes are held out of every simulator's training).
    Re-running on the same folder with the same parameters skips finished scenes."""
    from sim2real_kit.data.layout import DepthLayout, split_sizes

    # 1. check every argument before anything is written
    scenes = _check_count("scenes", scenes, 2)
    frames = _check_count("frames", frames)
    width, height = _check_count("width", width), _check_count("height", height)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    workers = _check_count("workers", workers)
    split_sizes(scenes, val_fraction, benchmark_fraction)  # the fractions, checked before anything is written
    world = check_world(world)
    if isinstance(sensor, dict):
        sensor = SensorConfig.from_dict({**SensorConfig().to_dict(), **sensor})
    if isinstance(generator, dict):
        generator = SceneConfig.from_dict({**SceneConfig().to_dict(), **generator})
    sensor_cfg = (sensor or SensorConfig()).check()
    gen = (generator or SceneConfig()).check()
    camera = synth_camera(width, height)
    model = SensorModel(sensor_cfg)

    # 2. create (or reopen, for resume) the layout; a different dataset in out_dir is refused
    meta = _plain(
        {
            "source": "procedural",
            "generator_version": GENERATOR_VERSION,
            "seed": int(seed),
            "frames_per_scene": frames,
            "generator": gen.to_dict(),
            "sensor": sensor_cfg.to_dict(),
            "rgb": "shaded colour-by-instance of the real geometry",
            "instance": "instance ids of the real geometry: 0 none, 1-99 furniture, 100 floor, 101-104 walls, 105 ceiling",
        }
        | ({} if world == "procedural" else {"world": world})  # absent = procedural (files as before the option)
    )
    lay = DepthLayout.create(out_dir, camera, depth_unit_m=DEPTH_UNIT_M, meta=meta)

    # 3. scenes not finished yet
    todo = [i for i in range(scenes) if not lay.scene_done(scene_id(i))]
    from tqdm.auto import tqdm

    bar = tqdm(
        total=scenes * frames, initial=(scenes - len(todo)) * frames, unit="frame", desc="synth", disable=not progress
    )
    try:
        if workers > 1 and len(todo) > 1:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            jobs = [
                (str(lay.root), i, int(seed), frames, camera.to_dict(), gen.to_dict(), sensor_cfg.to_dict(), world)
                for i in todo
            ]
            with ctx.Pool(min(workers, len(todo))) as pool:
                for sid in pool.imap_unordered(_worker, jobs):
                    bar.update(frames)
                    if on_scene_done is not None:
                        on_scene_done(sid)
        else:
            for i in todo:
                scene = make_scene(scene_seed(seed, i), frames, camera, gen, world=world)
                write_scene(lay, scene, scene_id(i), model, seed, i, on_frame=lambda: bar.update(1))
                if on_scene_done is not None:
                    on_scene_done(scene_id(i))
    finally:
        bar.close()

    # 4. split lists (by scene)
    write_scene_splits(lay, scenes, frames, seed, val_fraction, benchmark_fraction)
    return lay


@dataclass
class FrameTruth:
    """Everything behind one synthesized frame, regenerated: the scene, both renders and the capture."""

    scene: Scene
    frame: int
    cad: object  # render.RenderResult of the CAD geometry (depth + instance)
    real: object  # render.RenderResult of the real geometry (with normals, incidence, material)
    capture: object  # sensor.Capture: captured depth + per-component effect masks and deltas


def reproduce_frame(root: str | Path, ref) -> FrameTruth:
    """Rebuild frame `ref` (FrameRef or "scene/frame") of a synthesized dataset from its dataset.yaml.

    The sensor's ground truth (`capture.effects`, `capture.deltas`) is not stored on disk; this
    regenerates it exactly (same seeds), so notebooks can compare flags with where each sensor
    component acted. `capture.depth` equals the stored scan up to the 1 mm PNG rounding."""
    from sim2real_kit.data.layout import DepthLayout, FrameRef

    lay = DepthLayout(root)
    ref = ref if isinstance(ref, FrameRef) else FrameRef.parse(str(ref))
    meta = lay.meta
    if meta.get("source") != "procedural":
        raise ConfigError("not a procedural dataset (dataset.yaml source != procedural)", lay.root / "dataset.yaml")
    try:
        index, frame = int(ref.scene.lstrip("s")), int(ref.frame)
        seed, frames = int(meta["seed"]), int(meta["frames_per_scene"])
        gen = SceneConfig.from_dict(meta["generator"])
        sensor = SensorModel(SensorConfig.from_dict(meta["sensor"]))
        world = check_world(str(meta.get("world", "procedural")))
    except (KeyError, ValueError) as e:
        raise ConfigError(f"cannot rebuild frame {ref}: {e}", lay.root / "dataset.yaml") from None
    if not 0 <= frame < frames:
        raise ConfigError(f"frame {ref} is not one of the {frames} frames per scene", lay.root / "dataset.yaml")
    scene = make_scene(scene_seed(seed, index), frames, lay.camera, gen, world=world)
    cad = scene.render(frame, "cad", full=False)
    real = scene.render(frame, "real")
    capture = sensor.capture(real, scene.camera, _frame_rng(seed, index, frame))
    return FrameTruth(scene=scene, frame=frame, cad=cad, real=real, capture=capture)


def _frame_rng(seed: int, index: int, frame: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index), int(frame), 0x5E45])


def load_scene_info(root: str | Path, scene: str) -> dict:
    """The scene.json of a synthesized scene (instance table, room, object poses)."""
    from sim2real_kit.data.layout import DepthLayout

    return json.loads(DepthLayout(root).scene_info_path(scene).read_text())


def default_workers() -> int:
    """Cores this process may use (what `workers` should be for the fastest run)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


__all__ = [
    "synthesize",
    "synth_camera",
    "scene_id",
    "frame_ids",
    "scene_seed",
    "split_scenes",
    "scene_splits",
    "write_scene_splits",
    "shade_rgb",
    "write_frame",
    "write_scene",
    "reproduce_frame",
    "FrameTruth",
    "load_scene_info",
    "default_workers",
    "GENERATOR_VERSION",
]
