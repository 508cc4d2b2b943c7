"""Camera poses and splits of imported real data (`convert.py`).

The objects of a scene are static, so the world is the frame of a reference object (the first object
of the scene's first frame) and cam-to-world = inv(reference object-in-camera); every other object,
fixed in the world where it is first seen, gives an independent estimate whose disagreement with
the reference is measured (`camera_poses`) and recorded. `split_frames` chooses train / val / benchmark frames.
"""

from __future__ import annotations

import math

import numpy as np

from sim2real_kit.data.convert_source import SrcFrame, frames_by_scene
from sim2real_kit.data.layout import FrameRef, split_sizes
from sim2real_kit.errors import PoseError

Gap = tuple[float, float]  # (rotation deg, camera-centre distance mm)
ObjectKey = tuple[int, int]  # (class id, occurrence of the class within the frame)


def rot_deg(Ra: np.ndarray, Rb: np.ndarray) -> float:
    """Angle between two rotations, degrees (chordal formula: accurate for tiny angles)."""
    chord = np.linalg.norm(Ra - Rb) / (2.0 * math.sqrt(2.0))
    return math.degrees(2.0 * math.asin(min(1.0, chord)))


def pose_gap(a: np.ndarray, b: np.ndarray) -> Gap:
    """(rotation deg, camera-centre distance mm) between two 4x4 cam-to-world poses."""
    return rot_deg(a[:3, :3], b[:3, :3]), float(np.linalg.norm(a[:3, 3] - b[:3, 3]) * 1000.0)


# ---------------------------------------------------------------------- camera poses from static objects
def camera_poses(frames: list[SrcFrame], names: dict[int, str]) -> tuple[dict[FrameRef, np.ndarray], list[dict], dict]:
    """Cam-to-world pose per frame (world = reference object of each scene), per-frame disagreement
    rows and a summary. Objects are identified by (class id, occurrence within the frame)."""
    poses: dict[FrameRef, np.ndarray] = {}
    rows: list[dict] = []
    per_object: dict[str, list[Gap]] = {}
    references: dict[str, str] = {}
    extr: list[Gap] = []
    for scene, scene_frames in frames_by_scene(frames).items():
        world_of: dict[ObjectKey, np.ndarray] = {}  # object key -> object-to-world
        first_c2w, first_w2c = None, None
        for f in scene_frames:
            keys = _object_keys(f)
            if not world_of:
                world_of[keys[0]] = np.eye(4)
                references[scene] = _object_name(keys[0], names)
            c2w, gaps = _place_camera(f, keys, world_of, scene)
            poses[f.ref] = c2w
            worst = (0.0, 0.0)
            for key, gap in gaps:
                per_object.setdefault(_object_name(key, names), []).append(gap)
                worst = (max(worst[0], gap[0]), max(worst[1], gap[1]))
            row = {"pose_gap_deg": worst[0], "pose_gap_mm": worst[1], "objects_compared": len(gaps)}
            if f.world_to_cam is not None:  # source extrinsics: compare camera motion since the scene's first frame
                if first_w2c is None:
                    first_c2w, first_w2c = c2w, f.world_to_cam
                ours = np.linalg.inv(first_c2w) @ c2w
                theirs = first_w2c @ np.linalg.inv(f.world_to_cam)
                extr.append(pose_gap(ours, theirs))
            rows.append(row)
    return poses, rows, _pose_summary(references, per_object, extr)


def _object_keys(f: SrcFrame) -> list[ObjectKey]:
    """(class id, occurrence) of each object of the frame; a frame without objects cannot be placed."""
    keys, seen = [], {}
    for o in f.objects:
        seen[o.class_id] = seen.get(o.class_id, -1) + 1
        keys.append((o.class_id, seen[o.class_id]))
    if not f.objects:
        raise PoseError("frame has no object poses; the camera cannot be placed", f.meta_path)
    return keys


def _place_camera(
    f: SrcFrame, keys: list[ObjectKey], world_of: dict[ObjectKey, np.ndarray], scene: str
) -> tuple[np.ndarray, list[tuple[ObjectKey, Gap]]]:
    """(cam-to-world, [(object key, gap to the reference estimate)]) of a frame from the objects
    already placed in the world (`world_of`, oldest first); objects seen for the first time are
    then placed through this camera."""
    known = [i for i, k in enumerate(keys) if k in world_of]
    if not known:
        raise PoseError(
            f"frame {f.frame} shares no object with earlier frames of scene {scene}; camera cannot be placed",
            f.meta_path,
        )
    ordered = sorted(known, key=lambda i: list(world_of).index(keys[i]))
    estimates = {i: world_of[keys[i]] @ np.linalg.inv(f.objects[i].pose) for i in ordered}
    c2w = estimates[ordered[0]]
    gaps = [(keys[i], pose_gap(c2w, estimates[i])) for i in ordered[1:]]
    for i, k in enumerate(keys):
        if k not in world_of:
            world_of[k] = c2w @ f.objects[i].pose
    return c2w, gaps


def _pose_summary(references: dict[str, str], per_object: dict[str, list[Gap]], extr: list[Gap]) -> dict:
    """What `camera_poses` measured, for dataset.yaml: method, worst and median gaps, per object."""
    summary: dict = {
        "world": "per scene, the frame of its reference object (first object of the scene's first frame), metres",
        "reference_object": references,
        "method": "each other object k gives cam-to-world = T_world_k . inv(T_cam_k) with T_world_k fixed where k "
        "is first seen; disagreement = rotation angle and camera-centre distance to the reference estimate",
    }
    gaps = [g for v in per_object.values() for g in v]
    if gaps:
        summary.update(
            max_rotation_deg=max(g[0] for g in gaps),
            max_translation_mm=max(g[1] for g in gaps),
            median_rotation_deg=float(np.median([g[0] for g in gaps])),
            median_translation_mm=float(np.median([g[1] for g in gaps])),
            per_object={
                k: {
                    "max_rotation_deg": max(g[0] for g in v),
                    "max_translation_mm": max(g[1] for g in v),
                    "frames": len(v),
                }
                for k, v in per_object.items()
            },
        )
    else:
        summary["note"] = "no frame shows two objects: consistency not measurable"
    if extr:
        summary["source_extrinsics"] = {
            "what": "camera motion since each scene's first frame, ours vs the source's world-to-camera matrices",
            "max_rotation_deg": max(g[0] for g in extr),
            "max_translation_mm": max(g[1] for g in extr),
        }
    return summary


def _object_name(key: ObjectKey, names: dict[int, str]) -> str:
    """Class name, with `#k` for the k-th extra occurrence of a class in a frame."""
    name = names.get(key[0], str(key[0]))
    return name if key[1] == 0 else f"{name}#{key[1]}"


# ---------------------------------------------------------------------- splits
def split_frames(
    frames: list[SrcFrame], poses: dict[FrameRef, np.ndarray], val_fraction: float, benchmark_fraction: float = 0.0
) -> tuple[dict[str, list[FrameRef]], dict]:
    """({"train", "val", "benchmark": refs}, description); counts by `layout.split_sizes`. Several scenes: the
    last scenes are held out whole for val, the ones before them for benchmark (scenes no simulator trains on);
    one scene: its last frames are val, the frames before them benchmark (the nearest-train-frame gap of each
    is reported: neighbouring frames of a video are near-duplicates), and the description declares frame-wise
    splits (`unit: frame`, which `layout.validate` reads). benchmark is empty when there are too few scenes
    (frames) to keep one in train. One frame: a test-only sample (val only, `test_only: true`; `layout.DepthLayout`
    refuses its train split with an error saying so)."""
    refs = [f.ref for f in frames]
    if len(refs) == 1:  # nothing to train on: a test-only sample, scored against, never trained on
        desc = {"rule": "one frame: test only (val.lst), no train split", "unit": "frame", "test_only": True}
        return {"train": [], "val": refs, "benchmark": []}, desc
    scenes = list(dict.fromkeys(r.scene for r in refs))
    if len(scenes) >= 2:
        n_val, n_bench = split_sizes(len(scenes), val_fraction, benchmark_fraction)
        val_scenes = set(scenes[len(scenes) - n_val :])
        bench_scenes = set(scenes[len(scenes) - n_val - n_bench : len(scenes) - n_val])
        splits = {
            "train": [r for r in refs if r.scene not in val_scenes | bench_scenes],
            "val": [r for r in refs if r.scene in val_scenes],
            "benchmark": [r for r in refs if r.scene in bench_scenes],
        }
        rule = f"last {n_val} of {len(scenes)} scenes held out whole for val"
        if n_bench:
            rule += f", the {n_bench} before them for benchmark"
        desc = {"rule": rule, "unit": "scene", "val_scenes": sorted(val_scenes)}
        if n_bench:
            desc["benchmark_scenes"] = sorted(bench_scenes)
        return splits, desc
    n_val, n_bench = split_sizes(len(refs), val_fraction, benchmark_fraction)
    n_train = len(refs) - n_val - n_bench
    splits = {"train": refs[:n_train], "benchmark": refs[n_train : n_train + n_bench], "val": refs[n_train + n_bench :]}
    rule = f"one scene: its last {n_val} of {len(refs)} frames are val"
    if n_bench:
        rule += f", the {n_bench} before them benchmark"
    desc = {
        "rule": rule,
        "unit": "frame",
        "val_nearest_train_frame": _nearest_gap(splits["val"], splits["train"], poses),
    }
    if n_bench:
        desc["benchmark_nearest_train_frame"] = _nearest_gap(splits["benchmark"], splits["train"], poses)
    return splits, desc


def _nearest_gap(held: list[FrameRef], train: list[FrameRef], poses: dict[FrameRef, np.ndarray]) -> dict:
    """Worst (over `held`) distance to the nearest train camera: translation mm and rotation deg."""
    gaps = [min((pose_gap(poses[v], poses[t]) for t in train), key=lambda g: g[1]) for v in held]
    return {"max_translation_mm": max(g[1] for g in gaps), "max_rotation_deg": max(g[0] for g in gaps)}


__all__ = ["camera_poses", "pose_gap", "rot_deg", "split_frames"]
