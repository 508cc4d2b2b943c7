"""The layout builder of the real-data importers (`convert.py`): from source frames (`convert_source`)
to a `lasa_depth` layout, whatever the source format.

`build_layout` checks that every frame shares one camera (`camera_from_opencv_K`: OpenCV K ->
kit camera), loads the meshes of every class in view, places the cameras (`convert_poses`), renders
each frame's CAD depth (`render_objects`), takes the instance ids from the source's segmentation
(or the rendering), measures CAD-vs-real agreement per frame, and writes the layout with its
`dataset.yaml` and `import_report.csv` (`read_report`) into a hidden staging folder (`staging`)
that replaces `out` only when everything succeeded.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from sim2real_kit.camera import Camera
from sim2real_kit.data.convert_poses import camera_poses, split_frames
from sim2real_kit.data.convert_source import SrcFrame, SrcModel, image_size, load_mesh, read_label, read_rgb
from sim2real_kit.data.layout import DepthLayout
from sim2real_kit.depth import read_depth_png
from sim2real_kit.errors import DepthFormatError, LayoutError
from sim2real_kit.io import atomic_path, atomic_write_text

REPORT_NAME = "import_report.csv"
_K_ATOL = 1e-6  # pixels: intrinsics closer than this are one camera


# ---------------------------------------------------------------------- camera and rendering
def camera_from_opencv_K(K, width: int, height: int) -> Camera:
    """Kit camera of an OpenCV-convention K (pixel centres at integer u): cx, cy shifted by +0.5 px."""
    K = np.asarray(K, dtype=np.float64).copy()
    K[0, 2] += 0.5
    K[1, 2] += 0.5
    return Camera.from_K(K, width, height)


def render_objects(
    meshes: dict[int, tuple[np.ndarray, np.ndarray]],
    class_ids: Sequence[int],
    poses_obj_in_cam: Sequence[np.ndarray],
    camera: Camera,
) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast posed objects: (CAD depth [H, W] float32 metres, 0 = no mesh; class id [H, W] int32, 0 = none).

    `meshes`: {class id: (vertices [V, 3] metres, triangles [F, 3])}; `poses_obj_in_cam`: one 4x4
    object-in-camera pose (metres) per entry of `class_ids`. The meshes are placed in the camera frame
    and rendered with the identity camera pose by `data.render.SceneRenderer`."""
    from sim2real_kit.data.render import SceneRenderer

    placed = {}
    for i, (cid, pose) in enumerate(zip(class_ids, poses_obj_in_cam, strict=True)):
        verts, tris = meshes[cid]
        pose = np.asarray(pose, dtype=np.float64)
        placed[i + 1] = (verts @ pose[:3, :3].T + pose[:3, 3], tris)
    result = SceneRenderer(placed).render(camera, np.eye(4))
    class_of = np.array([0, *class_ids], dtype=np.int32)
    return result.depth, class_of[result.instance]


# ---------------------------------------------------------------------- building the layout
@contextlib.contextmanager
def staging(out: Path, overwrite: bool):
    """Yield an empty hidden sibling folder of `out`; on success it replaces `out`, on error it is removed."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LayoutError("output path exists and is not a folder", out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise LayoutError("output folder is not empty; choose another --out, delete it, or pass overwrite", out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()  # not mkdtemp: the folder becomes `out`, so it keeps the umask's permissions
    try:
        yield tmp
        if out.exists():
            trash = out.parent / f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.replace(out, trash)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_layout(
    frames: list[SrcFrame],
    models: dict[int, SrcModel],
    out: str | Path,
    source: dict,
    class_note: str,
    progress: bool,
    val_fraction: float,
    overwrite: bool,
    benchmark_fraction: float = 0.0,
) -> DepthLayout:
    """Render and write `frames` as a `lasa_depth` layout at `out` (see the module docstring); returns it.

    `source`: what dataset.yaml records of the source (its "kind" names the progress bar);
    `class_note`: what the class ids of `_inst.png` are; `val_fraction` / `benchmark_fraction`: the splits
    (`convert_poses.split_frames`)."""
    out = Path(out)
    # 1. one camera for the layout (intrinsics and size of every frame must agree)
    camera, K0 = _layout_camera(frames)
    unit = min(f.depth_unit_m for f in frames)  # finest unit of the source: nothing is lost
    # 2. meshes of every class in view (missing or empty ones fail before anything is written)
    used = sorted({o.class_id for f in frames for o in f.objects})
    for cid in used:
        if cid not in models:
            raise LayoutError(f"no model for class {cid}", frames[0].meta_path)
    meshes = {cid: load_mesh(models[cid]) for cid in used}
    # 3. camera poses from the static objects, and the splits
    poses, pose_rows, pose_summary = camera_poses(frames, {c: m.name for c, m in models.items()})
    splits, split_desc = split_frames(frames, poses, val_fraction, benchmark_fraction)
    meta = {
        "source": {**source, "frames": len(frames)},
        "intrinsics_convention": "source K has OpenCV pixel centres (integer u, v); kit camera cx = cx_src + 0.5, "
        "cy = cy_src + 0.5",
        "source_K": K0.tolist(),
        "classes": {int(c): models[c].name for c in used},
        "instance_ids": f"_inst.png holds the class id ({class_note}) per pixel, 0 = background; from the "
        f"{_instance_source(frames)}; _cadinst.png the class ids of the CAD rendering",
        "cad_depth": "open3d ray casting (sim2real_kit.data.render) of each object's mesh at its source pose",
        "pose_consistency": _plain(pose_summary, sig=6),
        "splits": _plain({**split_desc, **{k: len(v) for k, v in splits.items()}}, sig=6),
        "notes": _notes(split_desc, benchmark_fraction),
    }
    meta = _plain(meta)
    # 4. render and write every frame into a staging folder, renamed onto `out` at the end
    with staging(out, overwrite) as tmp:
        lay = DepthLayout.create(tmp, camera, depth_unit_m=unit, meta=meta)
        split_of = {r: split for split, refs in splits.items() for r in refs}
        rows = []
        for f, prow in _progress(list(zip(frames, pose_rows)), f"import {source['kind']}", progress):
            row = _write_frame(lay, f, meshes, camera, poses[f.ref])
            rows.append({"scene": f.scene, "frame": f.frame, "split": split_of[f.ref], **row, **prow})
        for split, refs in splits.items():
            if refs:
                lay.write_split(split, refs)
        _write_report(tmp / REPORT_NAME, rows)
        meta_final = dict(lay.meta)
        meta_final["agreement"] = _plain(_summarise(rows), sig=6)
        atomic_write_text(tmp / "dataset.yaml", yaml.safe_dump(meta_final, sort_keys=False))
    return DepthLayout(out)


def _layout_camera(frames: list[SrcFrame]) -> tuple[Camera, np.ndarray]:
    """(kit camera, source K) of the layout: every frame must have the first frame's intrinsics."""
    width, height = image_size(frames[0].depth_path)
    K0 = frames[0].K
    for f in frames:
        if not np.allclose(f.K, K0, rtol=0, atol=_K_ATOL):
            raise LayoutError(
                f"intrinsics {f.K[[0, 1, 0, 1], [0, 1, 2, 2]].tolist()} differ from the first frame's "
                f"{K0[[0, 1, 0, 1], [0, 1, 2, 2]].tolist()}; a layout holds one camera: import these frames "
                "separately (videos= / scenes=)",
                f.meta_path,
            )
    return camera_from_opencv_K(K0, width, height), K0


def _instance_source(frames: list[SrcFrame]) -> str:
    """Where the instance ids of `_inst.png` come from (dataset.yaml)."""
    if all(f.label_path for f in frames):
        return "label image"
    if all(f.mask_paths for f in frames):
        return "mask_visib"
    return "rendered CAD (per frame where the source has no segmentation)"


def _notes(split_desc: dict, benchmark_fraction: float = 0.0) -> list[str]:
    """The caveats dataset.yaml states: CAD covers the objects only; a one-video val (benchmark) split holds out
    little; too few scenes for a benchmark split."""
    notes = ["CAD depth holds the object meshes only: 0 (no CAD) on table, walls and unmodelled objects, as in LASA."]
    if split_desc.get("test_only"):
        notes.append(
            "test-only sample: one frame, in val.lst only; nothing here can be trained on (train on another sample "
            "and score on this one: sim2real evaluate-real --train-sample OTHER --test-sample THIS)."
        )
        return notes
    if "val_nearest_train_frame" in split_desc:
        g = split_desc["val_nearest_train_frame"]
        notes.append(
            f"val frames lie within {g['max_translation_mm']:.2f} mm / {g['max_rotation_deg']:.3f} deg of a train "
            "frame of the same video: a held-out frame holds out (almost) nothing; treat val as a smoke test, "
            "not a generalisation measure."
        )
    if "benchmark_nearest_train_frame" in split_desc:
        g = split_desc["benchmark_nearest_train_frame"]
        notes.append(
            f"benchmark frames lie within {g['max_translation_mm']:.2f} mm / {g['max_rotation_deg']:.3f} deg of a "
            "train frame of the same video: the simulators run on frames next to ones they trained on."
        )
    if (
        benchmark_fraction > 0
        and "benchmark_scenes" not in split_desc
        and "benchmark_nearest_train_frame" not in split_desc
    ):
        notes.append(
            "no benchmark split: too few scenes (frames) to hold one out of training and keep one in train; the "
            "benchmark's downstream task will not run on this dataset."
        )
    return notes


def _progress(items: list, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, disable=not progress)


def _write_frame(
    lay: DepthLayout, f: SrcFrame, meshes: dict[int, tuple[np.ndarray, np.ndarray]], camera: Camera, pose: np.ndarray
) -> dict:
    """Render the frame's CAD depth, write the frame (CAD, real depth, pose, colour, instance ids) and
    return its CAD-vs-real agreement (`_agreement`)."""
    height, width = camera.height, camera.width
    real = read_depth_png(f.depth_path, f.depth_unit_m)
    if real.shape != (height, width):
        raise DepthFormatError(
            f"depth is {real.shape[1]}x{real.shape[0]}, the dataset's frames are {width}x{height}", f.depth_path
        )
    cad, rendered_ids = render_objects(meshes, [o.class_id for o in f.objects], [o.pose for o in f.objects], camera)
    label = _frame_labels(f, (height, width))
    instance = rendered_ids if label is None else label
    rgb = read_rgb(f.rgb_path) if f.rgb_path is not None else None
    if rgb is not None and rgb.shape[:2] != (height, width):
        raise LayoutError(f"colour image is {rgb.shape[1]}x{rgb.shape[0]}, depth is {width}x{height}", f.rgb_path)
    lay.write_frame(f.ref, cad, real, pose, rgb=rgb, instance=instance)
    lay.write_cad_instance(f.ref, rendered_ids)  # object masks of the CAD side (simulators), never the real labels
    return _agreement(cad, real, instance, rendered_ids)


def _frame_labels(f: SrcFrame, shape: tuple[int, int]) -> np.ndarray | None:
    """Class id per pixel from the source's segmentation, or None when it has none."""
    from PIL import Image

    if f.label_path is not None:
        label = read_label(f.label_path)
        if label.shape != shape:
            raise LayoutError(f"label image is {label.shape[::-1]}, depth is {shape[::-1]} (W x H)", f.label_path)
        stray = sorted(set(np.unique(label).tolist()) - {0} - {o.class_id for o in f.objects})
        if stray:
            raise LayoutError(f"label ids {stray} have no pose in the frame's cls_indexes", f.label_path)
        return label.astype(np.int32)
    if f.mask_paths:
        label = np.zeros(shape, np.int32)
        for obj_id, path in f.mask_paths:
            try:
                with Image.open(path) as im:
                    mask = np.asarray(im)
            except OSError as e:
                raise LayoutError(f"cannot decode mask: {e}", path) from None
            if mask.shape != shape:
                raise LayoutError(f"mask is {mask.shape[::-1]}, depth is {shape[::-1]} (W x H)", path)
            label[mask > 0] = obj_id
        return label
    return None


def _agreement(cad: np.ndarray, real: np.ndarray, label: np.ndarray, rendered: np.ndarray) -> dict:
    """CAD vs real depth on labelled object pixels with both depths (mm), and the share of object
    pixels (union of label and rendering) whose rendered class equals the label."""
    m = (label > 0) & (cad > 0) & (real > 0)
    err = np.abs(cad[m].astype(np.float64) - real[m]) * 1000.0
    union = (label > 0) | (rendered > 0)
    return {
        "object_px": int(m.sum()),
        "median_abs_mm": float(np.median(err)) if err.size else float("nan"),
        "p90_abs_mm": float(np.percentile(err, 90)) if err.size else float("nan"),
        "label_match": float((label[union] == rendered[union]).mean()) if union.any() else float("nan"),
    }


def _summarise(rows: list[dict]) -> dict:
    def stats(key):
        v = np.array([r[key] for r in rows], dtype=np.float64)
        v = v[np.isfinite(v)]
        return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())} if v.size else None

    return {
        "what": f"per frame, CAD vs real |depth| on labelled object pixels (mm) and label_match; per-frame rows in "
        f"{REPORT_NAME}",
        "median_abs_mm": stats("median_abs_mm"),
        "p90_abs_mm": stats("p90_abs_mm"),
        "label_match": stats("label_match"),
    }


def _write_report(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def _plain(obj, sig: int | None = None):
    """numpy scalars / tuples -> plain Python for safe YAML; floats rounded to `sig` significant
    digits when given (measured figures: keeps 1e-13 mm as such, not as 0)."""
    if isinstance(obj, dict):
        return {(int(k) if isinstance(k, np.integer) else k): _plain(v, sig) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, sig) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and sig is not None:
        return float(f"{obj:.{sig}g}")
    return obj


def read_report(root: str | Path) -> list[dict]:
    """Rows of a dataset's `import_report.csv` (numbers as float)."""
    path = Path(root) / REPORT_NAME
    if not path.is_file():
        raise LayoutError("import report is missing (the dataset was not made by data.convert)", path)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k, v in r.items():
            if k not in ("scene", "frame", "split"):
                r[k] = float(v)
    return rows


__all__ = ["REPORT_NAME", "build_layout", "camera_from_opencv_K", "read_report", "render_objects", "staging"]
