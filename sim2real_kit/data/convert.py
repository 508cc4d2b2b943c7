"""Import real RGB-D data with object meshes and poses (YCB-Video, BOP) into the `lasa_depth` layout.

The paper's pairs are real captures with CAD depth rendered from aligned models (Sec. 4, LASA). Any
dataset of real depth + object meshes + object poses gives the same kind of pair: this module renders
each frame's CAD depth (open3d ray casting through `data.render.SceneRenderer`, 0 where no mesh)
with the frame's own intrinsics and object poses, and writes

- `_gt`  = CAD depth, `_scan` = real depth (in the source's unit: YCB-Video is 0.1 mm, so the layout
  records `depth_unit_m: 0.0001` and no precision is lost), `_rgb` = colour,
- `_inst` = class id per pixel from the source's segmentation (YCB-Video label image, BOP
  `mask_visib`), or from the rendering when the source has none; `_cadinst` = class id per pixel of the
  CAD rendering (the object masks of what simulators make from the CAD),
- camera-to-world poses: the objects are static, so the world is the frame of a reference object
  (the first object of a scene's first frame) and cam-to-world = inv(reference object-in-camera);
  the other objects give independent estimates whose disagreement is measured and recorded,
- `intrinsics.json`, `dataset.yaml` (source, classes, conventions, pose consistency, CAD-vs-real
  agreement, splits) and `import_report.csv` (one row per frame),
- `train.lst`, `val.lst` and `benchmark.lst` (held out of every simulator's training; by video when
  there are several, else by frames: `convert_poses.split_frames`).

Intrinsics: YCB-Video and BOP use the OpenCV convention (pixel centres at integer u, v); the kit puts
pixel centres at (u + 0.5, v + 0.5), so the kit camera has cx = cx_cv + 0.5, cy = cy_cv + 0.5
(`camera_from_opencv_K`). On the YCB-Video sample the unshifted K gives a visibly worse fit
(median |CAD - real| 0.93-0.96 mm instead of 0.87-0.89 mm over the five frames; rendered ids agree
with the label image on 99.0 % instead of 99.9 % of object pixels).

Nothing is half-written: a dataset is built in a hidden temporary sibling of `out` and renamed onto
`out` at the end; on any error the temporary folder is removed and `out` is left as it was.

Where the pieces live: this module is the public face (`import_ycbv`, `import_bop`, and every name it
had before the split: `export_bop`, `camera_from_opencv_K`, `render_objects`, `read_report`,
`REPORT_NAME`); the source-independent frame description and file readers are in
`convert_source.py`, the readers in `convert_ycbv.py` and `convert_bop.py` (with the BOP writer
`export_bop`), camera poses and splits in `convert_poses.py`, and the layout builder (camera check,
rendering, labels, agreement, report, staging) in `convert_build.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sim2real_kit.data.convert_bop import bop_frames, bop_models, export_bop
from sim2real_kit.data.convert_build import REPORT_NAME, build_layout, camera_from_opencv_K, read_report, render_objects
from sim2real_kit.data.convert_ycbv import ycbv_frames, ycbv_models
from sim2real_kit.data.layout import DepthLayout


def import_ycbv(
    src: str | Path,
    out: str | Path,
    videos: Sequence[str] | None = None,
    progress: bool = True,
    *,
    val_fraction: float = 0.2,
    benchmark_fraction: float = 0.25,
    overwrite: bool = False,
) -> DepthLayout:
    """Import YCB-Video (`data/<video>/<frame>-{depth,color,label}.png`, `-meta.mat`,
    `models/<class>/textured.obj`, `image_sets/classes.txt`) into a `lasa_depth` layout at `out`.

    `videos`: video folder names (default: all under `data/`); they must share one camera (YCB-Video
    videos 0048+ use a second camera: import them separately). Splits: see `convert_poses.split_frames` (whole videos
    held out when there are several, else the last frames): `val_fraction` to val, `benchmark_fraction` to
    benchmark (held out of every simulator's training; none when there are too few). Returns the opened layout; its
    `meta` holds the pose-consistency and CAD-vs-real figures."""
    src = Path(src)
    classes, models = ycbv_models(src)
    frames = ycbv_frames(src, videos, classes, progress)
    source = {"kind": "ycbv", "root": str(src.resolve()), "scenes": sorted({f.scene for f in frames})}
    class_note = "class index, 1-based into image_sets/classes.txt"
    return build_layout(frames, models, out, source, class_note, progress, val_fraction, overwrite, benchmark_fraction)


def import_bop(
    src: str | Path,
    out: str | Path,
    split: str = "test",
    scenes: Sequence[str | int] | None = None,
    progress: bool = True,
    *,
    models_dir: str = "models",
    val_fraction: float = 0.2,
    benchmark_fraction: float = 0.25,
    overwrite: bool = False,
) -> DepthLayout:
    """Import a BOP-format dataset (`<split>/<scene>/scene_camera.json` cam_K + depth_scale,
    `scene_gt.json` cam_R_m2c / cam_t_m2c in mm, `depth/*.png`, optional `rgb/*.{png,jpg}` and
    `mask_visib/*.png`, `<models_dir>/obj_*.ply` in mm) into a `lasa_depth` layout at `out`.

    `scenes`: scene folder names or ids (default: all of the split). Instance ids come from
    `mask_visib` when present, else from the rendering. Same splits and report as `import_ycbv`."""
    src = Path(src)
    frames = bop_frames(src, split, scenes)
    models = bop_models(src, models_dir, sorted({o.class_id for f in frames for o in f.objects}))
    source = {"kind": "bop", "root": str(src.resolve()), "split": split, "scenes": sorted({f.scene for f in frames})}
    class_note = "BOP obj_id"
    return build_layout(frames, models, out, source, class_note, progress, val_fraction, overwrite, benchmark_fraction)


__all__ = [
    "REPORT_NAME",
    "import_ycbv",
    "import_bop",
    "export_bop",
    "camera_from_opencv_K",
    "render_objects",
    "read_report",
]
