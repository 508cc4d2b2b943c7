"""The real sample on disk: the shipped YCB-Video folder found and imported into a run's `real_sample/data`
(`data.convert.import_ycbv`, once), and all its frames at full resolution (`RealFrames`) with the object
pixels every real-sample number counts."""

from __future__ import annotations

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
HELD_OUT_NOTE = (
    "Few-shot demonstration: Stage-I sees four to five frames of one static scene (camera moves < 1 mm "
    "between frames) with one object's pixels removed from its loss; it is scored on exactly those pixels. "
    "It shows whether a residual learned on some objects transfers to an unseen object of the same scene "
    "and sensor; it cannot show generalisation to other scenes, ranges or sensors."
)


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


def import_real_sample(
    run: RunFolder | str | Path, src: str | Path = DEFAULT_SAMPLE, progress: bool = False
) -> DepthLayout:
    """Import the YCB-Video folder `src` into `run_dir/real_sample/data` (`data.convert.import_ycbv`) unless a
    complete import of the same source is already there (then it is reused as is). Returns the layout."""
    from sim2real_kit.data.convert import REPORT_NAME, import_ycbv
    from sim2real_kit.data.layout import validate

    source = resolve_sample(src)
    out = as_run(run).real_sample_dir / "data"
    if (out / "dataset.yaml").is_file() and (out / REPORT_NAME).is_file():
        try:
            layout = DepthLayout(out)
            same = (layout.meta.get("source") or {}).get("root") == str(source)
            if same and not validate(out):
                return layout
        except Sim2RealError:
            pass  # unreadable leftovers: import again below
    # no benchmark split: this track uses every frame and holds out an object, not scenes
    return import_ycbv(source, out, progress=progress, overwrite=True, benchmark_fraction=0.0)


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
