"""The real sample on disk: a YCB-Video folder (the shipped `data/ycbv_sample`), a BOP folder (e.g. LM-O's
`lmo_sample`, Kinect v1) or an already imported `lasa_depth` layout with instance ids, imported into a run's
`real_sample/data*` (`data.convert.import_ycbv` / `import_bop`, once), and all its frames at full resolution
(`RealFrames`) with the object pixels every real-sample number counts. A one-frame sample imports as a test-only
layout (`DepthLayout.test_only`): it can be scored against, not trained on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim2real_kit.camera import Camera
from sim2real_kit.data.layout import DepthLayout, FrameRef
from sim2real_kit.errors import ConfigError, LayoutError, MissingArtifactError, Sim2RealError
from sim2real_kit.run import RunFolder, SampleSet, as_run

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_SAMPLE = "data/ycbv_sample"  # relative to the working directory, else to the repository
SENSOR = "Asus Xtion (PrimeSense structured light), YCB-Video"
# the depth sensor of a BOP dataset, by the dataset's short name (the first word of the sample folder's name)
BOP_SENSORS = {
    "lm": "Microsoft Kinect v1 (structured light), LINEMOD",
    "lmo": "Microsoft Kinect v1 (structured light), LM-O",
    "ycbv": SENSOR,
    "tless": "PrimeSense Carmine 1.09 (structured light), T-LESS",
}
REGIONS = ("objects", "heldout", "seen")  # all object pixels | the held-out object | the other objects
CROSS_REGIONS = ("objects", "silhouettes")  # the train / test mode: all object pixels | their 2-px outline band
SILHOUETTE_PX = 2  # width of the silhouette band (px inside each object's outline)
REGION_TEXT = {
    "objects": "all object pixels (label > 0, CAD > 0)",
    "silhouettes": f"object pixels within {SILHOUETTE_PX} px of their object's outline (`RealFrames.silhouette_mask`)",
    "heldout": "pixels of the held-out object (never in Stage-I's loss)",
    "seen": "pixels of the other objects (Stage-I trained on them: in-sample)",
}
LABELS = {
    "cad": "CAD (w/o sim)",
    "random": "random noise",
    "stage1": "Stage-I (few-shot)",
    "stage1_calibrated": "Stage-I, hole threshold calibrated on the training objects",
    "stage1_physics": "Stage-I + physics prior (few-shot)",
    "real": "real (reference)",
}
HELD_OUT_NOTE = (
    "Few-shot demonstration: Stage-I sees four to five frames of one static scene (camera moves < 1 mm "
    "between frames) with one object's pixels removed from its loss; it is scored on exactly those pixels. "
    "It shows whether a residual learned on some objects transfers to an unseen object of the same scene "
    "and sensor; it cannot show generalisation to other scenes, ranges or sensors."
)

CROSS_NOTE = (
    "Stage-I trains on every object of the training samples' frames; not one frame of the test samples reaches it "
    "(refused when a folder or a frame's real depth is on both sides). Scored on all object pixels of the test "
    "frames and on their silhouette band."
)


# ====================================================================== the sample on disk
def sample_kind(path: Path) -> str | None:
    """ "ycbv" (image_sets/classes.txt), "layout" (an imported lasa_depth layout), "bop" (camera.json and
    <split>/<scene>/scene_gt.json) or None."""
    if (path / "image_sets" / "classes.txt").is_file():
        return "ycbv"
    if (path / "lasa_depth").is_dir():
        return "layout"
    if (path / "camera.json").is_file() and any(path.glob("*/*/scene_gt.json")):
        return "bop"
    return None


def resolve_sample(src: str | Path = DEFAULT_SAMPLE) -> Path:
    """The sample folder `src` (YCB-Video, BOP or an imported layout, `sample_kind`): absolute, or relative to
    the working directory, else to the repository (so notebooks find the shipped sample from papermill's
    working directory)."""
    path = Path(src).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, REPO_ROOT / path]
    for candidate in candidates:
        if candidate.is_dir() and sample_kind(candidate):
            return candidate.resolve()
    where = ", ".join(str(c) for c in candidates)
    raise MissingArtifactError(
        f"real sample {str(src)!r} not found (looked in {where} for a YCB-Video folder (image_sets/classes.txt), a "
        f"BOP folder (camera.json, <split>/<scene>/scene_gt.json) or a lasa_depth layout); the kit ships a "
        f"YCB-Video sample at {REPO_ROOT / DEFAULT_SAMPLE}"
    )


def _import_dir(run: RunFolder, source: Path) -> Path:
    """`real_sample/data` for the shipped sample (as before), `real_sample/data_<name>-<hash>` for any other."""
    if source == (REPO_ROOT / DEFAULT_SAMPLE).resolve():
        return run.real_sample_dir / "data"
    digest = hashlib.sha1(str(source).encode()).hexdigest()[:6]  # two folders of one name stay apart
    return run.real_sample_dir / f"data_{source.name}-{digest}"


def _bop_split(source: Path) -> str:
    """The split folder of a BOP sample: "test" when it has one, else the first holding scenes."""
    splits = sorted({p.parent.parent.name for p in source.glob("*/*/scene_gt.json")})
    return "test" if "test" in splits else splits[0]


def import_real_sample(
    run: RunFolder | str | Path, src: str | Path = DEFAULT_SAMPLE, progress: bool = False
) -> DepthLayout:
    """Import the sample folder `src` into the run's `real_sample/data*` (`data.convert.import_ycbv` or
    `import_bop`; YCB-Video's shipped sample into `real_sample/data`) unless a complete import of the same
    source is already there (then it is reused as is); an imported layout is used in place. Returns the layout
    (a one-frame sample: a test-only layout)."""
    from sim2real_kit.data.convert import REPORT_NAME, import_bop, import_ycbv
    from sim2real_kit.data.layout import validate

    source = resolve_sample(src)
    kind = sample_kind(source)
    if kind == "layout":
        return DepthLayout(source)
    out = _import_dir(as_run(run), source)
    if (out / "dataset.yaml").is_file() and (out / REPORT_NAME).is_file():
        try:
            layout = DepthLayout(out)
            same = (layout.meta.get("source") or {}).get("root") == str(source)
            if same and not validate(out):
                return layout
        except Sim2RealError:
            pass  # unreadable leftovers: import again below
    # no benchmark split: this track uses every frame and holds out an object (or a whole sample), not scenes
    if kind == "bop":
        return import_bop(source, out, _bop_split(source), progress=progress, overwrite=True, benchmark_fraction=0.0)
    return import_ycbv(source, out, progress=progress, overwrite=True, benchmark_fraction=0.0)


def sensor_of(layout: DepthLayout) -> str:
    """The depth sensor of an imported sample: dataset.yaml `sensor` when given, YCB-Video's Asus Xtion, a
    known BOP dataset's sensor by the sample folder's first word (`BOP_SENSORS`), else "unknown sensor"."""
    if layout.meta.get("sensor"):
        return str(layout.meta["sensor"])
    source = layout.meta.get("source") or {}
    if source.get("kind") == "ycbv":
        return SENSOR
    name = Path(str(source.get("root", layout.root))).name.lower()
    key = name.replace("-", "_").split("_")[0]
    return BOP_SENSORS.get(key, f"unknown sensor ({source.get('kind', 'layout')} sample {name})")


@dataclass
class RealFrames:
    """Every frame of an imported real sample at full resolution (train and val lists together).

    cad, real: [F, H, W] float32 metres (CAD 0 where no mesh); instance: [F, H, W] int32 class id per pixel
    (0 = background); poses [F, 4, 4] camera-to-world; classes {class id: name}; sensor: the depth sensor
    (`sensor_of`); roots: the sample folders of `concat_frames` (default (root,)); test_only: a test-only
    sample (nothing to train on)."""

    refs: list[FrameRef]
    cad: np.ndarray
    real: np.ndarray
    instance: np.ndarray
    camera: Camera
    poses: np.ndarray
    classes: dict[int, str]
    root: Path
    sensor: str = SENSOR
    roots: tuple[Path, ...] = ()
    test_only: bool = False

    def __post_init__(self):
        self.roots = tuple(self.roots) or (Path(self.root),)

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

    def silhouette_mask(self, width: int = 2) -> np.ndarray:
        """bool [F, H, W]: object pixels within `width` px of their object's outline (a different id, no CAD or
        no CAD within a (2 width + 1)-px square; the frame's border is not an outline): where structured-light
        sensors lose depth."""
        from scipy.ndimage import grey_dilation, grey_erosion

        ids = np.where(self.object_mask(), self.instance, 0)
        window = (1, 2 * int(width) + 1, 2 * int(width) + 1)
        lo, hi = grey_erosion(ids, size=window, mode="nearest"), grey_dilation(ids, size=window, mode="nearest")
        return self.object_mask() & (lo != hi)


def concat_frames(samples: list[RealFrames]) -> RealFrames:
    """The frames of several samples as one `RealFrames` (same frame size required; camera, classes and sensor of
    the first, `roots` of all, sensors joined with " + " when they differ)."""
    shapes = {s.cad.shape[1:] for s in samples}
    if len(shapes) > 1:
        sizes = ", ".join(f"{s.root} ({s.cad.shape[2]}x{s.cad.shape[1]})" for s in samples)
        raise ConfigError(f"samples of one role must share a frame size: {sizes}")
    if len(samples) == 1:
        return samples[0]
    first = samples[0]
    sensors = " + ".join(dict.fromkeys(s.sensor for s in samples))
    return RealFrames(
        [r for s in samples for r in s.refs],
        *(np.concatenate([getattr(s, k) for s in samples]) for k in ("cad", "real", "instance")),
        first.camera,
        np.concatenate([s.poses for s in samples]),
        {k: v for s in reversed(samples) for k, v in s.classes.items()},
        first.root,
        sensors,
        tuple(r for s in samples for r in s.roots),
        all(s.test_only for s in samples),
    )


def load_frames(layout: DepthLayout) -> RealFrames:
    """All frames of an imported sample (train and val lists; val only for a test-only sample). Instance ids
    are required: they define the object pixels."""
    refs = sorted({*(layout.frames("train") if layout.has_split("train") else []), *layout.frames("val")})
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
        refs,
        np.stack(cad),
        np.stack(real),
        np.stack(instance),
        layout.camera,
        np.stack(poses),
        classes,
        layout.root,
        sensor_of(layout),
        test_only=layout.test_only,
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
