"""The run folder (DESIGN §3b): every path of a run, its config and provenance, and sample sets.

A run folder is what every step reads and writes; nothing else in the kit (and no notebook) builds one
of its paths by hand:

    runs/<name>/config.yaml                   the resolved config (each step saves the values it resolved)
    runs/<name>/provenance.json               written once ("run"), one entry appended per step ("steps")
    runs/<name>/data/                         the run's dataset when the kit made it (data.root == generate)
    runs/<name>/stage<k>/                     checkpoints/ pipeline/ losses.csv val.csv config.yaml
    runs/<name>/stage<k>/samples/<split>/     <scene>/<frame>_{gt,scan,sim1..simk}.png, camera.json, samples.json
    runs/<name>/disc/ (Stage-I), disc<k>/     model.safetensors metrics.json flags/<split>/flags.npz
    runs/<name>/baselines/<kind>/, direct/    GAN baselines and the "w/o res" model of the benchmark
    runs/<name>/benchmark/                    results.csv results.md figures/ meshes/ real_sample/
    runs/<name>/controls/<name>/              a control run (a run folder of its own, dataset linked)
    runs/<name>/ablations/<grid>/             an ablation grid on the run's dataset (notebook 06)
    runs/<name>/real_sample/                  the real sample imported into the layout (data/)
    runs/<name>/notebooks/                    NN_name.ipynb (executed), NN_name.metrics.json, run.json
    runs/<name>/index.html                    the run report
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim2real_kit.camera import Camera
from sim2real_kit.config import Config, load_config, overlay, provenance
from sim2real_kit.data.layout import DepthLayout, FrameRef
from sim2real_kit.depth import read_depth_png, write_depth_png
from sim2real_kit.errors import ConfigError, MissingArtifactError
from sim2real_kit.io import atomic_write_json

SAMPLES_CAMERA = "camera.json"
SAMPLES_META = "samples.json"


@dataclass
class SampleSet:
    """The samples of one split and stage: cad, real [F, S, S] metres, sims {stage: [F, S, S]} metres,
    refs, the model frame's camera and poses [F, 4, 4] (camera-to-world)."""

    refs: list[FrameRef]
    cad: np.ndarray
    real: np.ndarray
    sims: dict[int, np.ndarray]
    camera: Camera
    poses: np.ndarray


class RunFolder:
    """Paths, config and provenance of one run folder (see the module docstring for the layout)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.root)!r})"

    def __fspath__(self) -> str:
        return str(self.root)

    # ------------------------------------------------------------------ config and provenance
    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def provenance_path(self) -> Path:
        return self.root / "provenance.json"

    def has_config(self) -> bool:
        return self.config_path.is_file()

    def load_config(self) -> Config:
        """The run's resolved config; an error naming the command that makes it when there is none."""
        if not self.has_config():
            raise MissingArtifactError(
                f"no config.yaml in {self.root} (make the run with notebook 01, `sim2real train --stage 1 --out "
                f"{self.root}` or `sim2real notebooks --out {self.root}`)"
            )
        return Config.from_yaml(self.config_path, run_folder=True)

    def save_config(self, cfg: Config) -> None:
        """Write config.yaml (atomically); the provenance record is created the first time."""
        self.root.mkdir(parents=True, exist_ok=True)
        cfg.to_yaml(self.config_path)
        if not self.provenance_path.is_file():
            atomic_write_json(self.provenance_path, {"run": provenance(), "steps": []})

    def record_step(self, step: str, cfg: Config | None = None, **info) -> None:
        """Append one entry to provenance.json's "steps": what ran, when, with which command and code,
        the dataset fingerprint when the config names one."""
        record = self._read_provenance()
        entry = {"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        now = provenance(self.dataset_root(cfg) if cfg is not None else None)
        entry.update({k: now[k] for k in ("command", "git_commit") if k in now})
        if "dataset_fingerprint" in now:
            entry["dataset_fingerprint"] = now["dataset_fingerprint"]
        entry.update(info)
        record.setdefault("steps", []).append(entry)
        atomic_write_json(self.provenance_path, record)

    def _read_provenance(self) -> dict:
        if self.provenance_path.is_file():
            try:
                record = json.loads(self.provenance_path.read_text())
            except json.JSONDecodeError:
                record = {}
            if isinstance(record, dict) and "run" in record:
                return record
            return {"run": record, "steps": []}  # a provenance.json of an older run: kept as the run entry
        return {"run": provenance(), "steps": []}

    # ------------------------------------------------------------------ data
    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def dataset_root(self, cfg: Config) -> Path:
        """The run's dataset: the user's root, or `data/` for the procedural world (`data.root: generate`)."""
        return self.data_dir if cfg.data.root == "generate" else Path(cfg.data.root).expanduser()

    def layout(self, cfg: Config) -> DepthLayout:
        root = self.dataset_root(cfg)
        if not root.is_dir():
            raise MissingArtifactError(f"the run's dataset {root} does not exist (notebook 01 / `sim2real synth`)")
        return DepthLayout(root)

    # ------------------------------------------------------------------ stages and samples
    def stage_dir(self, stage: int) -> Path:
        return self.root / f"stage{stage}"

    def pipeline_dir(self, stage: int) -> Path:
        return self.stage_dir(stage) / "pipeline"

    def stage_config_path(self, stage: int) -> Path:
        """The config stage `stage` was trained with."""
        return self.stage_dir(stage) / "config.yaml"

    def losses_csv(self, stage: int) -> Path:
        return self.stage_dir(stage) / "losses.csv"

    def val_csv(self, stage: int) -> Path:
        """The validation curve of a stage (Stage-I: W1 of sampled val frames during training)."""
        return self.stage_dir(stage) / "val.csv"

    def samples_dir(self, stage: int, split: str) -> Path:
        return self.stage_dir(stage) / "samples" / split

    def sample_path(self, stage: int, split: str, scene: str, frame: str, key: str) -> Path:
        """One map of a written sample: key "gt" (CAD), "scan" (real) or "sim<k>" (stage k's output)."""
        return self.samples_dir(stage, split) / scene / f"{frame}_{key}.png"

    def pipeline_stamp(self, stage: int) -> str | None:
        """Which save of the stage's pipeline this is: the `save_id` every save writes into model_index.json (a
        copy of any kind keeps it); the file's mtime for a pipeline saved before save ids; None: no pipeline."""
        index = self.pipeline_dir(stage) / "model_index.json"
        if not index.is_file():
            return None
        try:
            saved = json.loads(index.read_text()).get("save_id")
        except json.JSONDecodeError:
            saved = None
        return saved or f"mtime:{index.stat().st_mtime_ns}"

    def samples_state(self, stage: int, split: str) -> str:
        """ "missing" (never finished), "stale" (drawn from a pipeline the stage has since replaced: trained on
        after sampling) or "ok"."""
        meta = self.samples_dir(stage, split) / SAMPLES_META
        if not meta.is_file():
            return "missing"
        try:
            mark = json.loads(meta.read_text())
            problem = None if isinstance(mark, dict) else f"not a JSON object ({type(mark).__name__})"
        except json.JSONDecodeError as err:
            problem = f"not valid JSON ({err})"
        if problem:
            raise MissingArtifactError(
                f"{meta}: {problem}; it marks the split's samples as finished: delete it and sample "
                f"the split again (sim2real sample, or rerun the notebook)"
            )
        drawn = mark.get("pipeline")
        now = self.pipeline_stamp(stage)
        return "stale" if drawn is not None and now is not None and drawn != now else "ok"

    def has_samples(self, stage: int, split: str) -> bool:
        """The split was sampled to the end by the stage's current pipeline (`samples_state` == "ok")."""
        return self.samples_state(stage, split) == "ok"

    def write_samples(self, stage: int, split: str, items: list[dict], camera: Camera) -> None:
        """Write one batch of samples: items with scene, frame, cad, real [S, S] metres and sims [k][S, S]."""
        camera.save_json(self.samples_dir(stage, split) / SAMPLES_CAMERA)
        for item in items:
            maps = {"gt": item["cad"], "scan": item["real"], **{f"sim{k}": s for k, s in enumerate(item["sims"], 1)}}
            for key, depth in maps.items():
                write_depth_png(self.sample_path(stage, split, item["scene"], item["frame"], key), depth)

    def start_samples(self, stage: int, split: str) -> None:
        """Drop the finished mark before maps are (re)written: until `finish_samples`, the folder may mix maps of
        two samplings and must not read as sampled."""
        (self.samples_dir(stage, split) / SAMPLES_META).unlink(missing_ok=True)

    def finish_samples(self, stage: int, split: str, frames: int, size: int) -> None:
        atomic_write_json(
            self.samples_dir(stage, split) / SAMPLES_META,
            {
                "split": split,
                "stage": stage,
                "frames": frames,
                "size": size,
                "pipeline": self.pipeline_stamp(stage),
            },
        )

    def load_samples(self, stage: int, split: str, layout: DepthLayout) -> SampleSet:
        """Read what `sample_split` wrote (an error naming the command that makes it)."""
        d = self.samples_dir(stage, split)
        state = self.samples_state(stage, split)
        if state != "ok":
            what = (
                f"the Stage-{stage} samples of split {split!r} in {d} are older than the stage's pipeline (trained on "
                "after sampling)"
                if state == "stale"
                else f"no Stage-{stage} samples of split {split!r} in {d}"
            )
            raise MissingArtifactError(
                f"{what}; make them with: sim2real sample --run {self.root} --split {split} --stages {stage}"
            )
        refs = [r for r in layout.frames(split) if self.sample_path(stage, split, r.scene, r.frame, "gt").is_file()]

        def read(ref: FrameRef, key: str) -> np.ndarray:
            return read_depth_png(self.sample_path(stage, split, ref.scene, ref.frame, key))

        cad = np.stack([read(r, "gt") for r in refs])
        real = np.stack([read(r, "scan") for r in refs])
        sims = {k: np.stack([read(r, f"sim{k}") for r in refs]) for k in range(1, stage + 1)}
        poses = np.stack([layout.read_pose(r) for r in refs])
        return SampleSet(refs, cad, real, sims, Camera.load_json(d / SAMPLES_CAMERA), poses)

    # ------------------------------------------------------------------ discriminator and flags
    def disc_dir(self, stage: int) -> Path:
        """The discriminator judging stage `stage`'s output: disc/ for Stage-I, disc2/ for Stage-II, ..."""
        return self.root / ("disc" if stage == 1 else f"disc{stage}")

    def disc_model(self, stage: int) -> Path:
        return self.disc_dir(stage) / "model.safetensors"

    def disc_metrics(self, stage: int) -> Path:
        return self.disc_dir(stage) / "metrics.json"

    def flags_path(self, stage: int, split: str) -> Path:
        return self.disc_dir(stage) / "flags" / split / "flags.npz"

    def real_scores_path(self, stage: int, split: str) -> Path:
        return self.disc_dir(stage) / "flags" / split / "scores_real.npz"

    def samples_drawn_by(self, stage: int, split: str) -> str | None:
        """Which pipeline save drew the split's finished samples (samples.json's "pipeline"), or None."""
        try:
            mark = json.loads((self.samples_dir(stage, split) / SAMPLES_META).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return mark.get("pipeline") if isinstance(mark, dict) else None

    def flags_state(self, stage: int) -> str:
        """ "missing" (no train flags), "stale" (made from samples drawn since by another pipeline, e.g. a Stage-I
        trained on and sampled again) or "ok". `flagging.train_and_flag` records in disc<k>/metrics.json which
        samples it flagged ("samples": {split: pipeline save}); flags with no such record (written by hand or by
        a kit before the record) read as "ok", as samples with no recorded pipeline do (`samples_state`)."""
        if not self.flags_path(stage, "train").is_file():
            return "missing"
        try:
            metrics = json.loads(self.disc_metrics(stage).read_text())
        except OSError:
            return "ok"
        except json.JSONDecodeError:
            return "stale"
        flagged = metrics.get("samples") if isinstance(metrics, dict) else None
        if not isinstance(flagged, dict):
            return "ok"
        now = {split: self.samples_drawn_by(stage, split) for split in flagged}
        return "ok" if flagged == now else "stale"

    # ------------------------------------------------------------------ benchmark, controls, notebooks
    @property
    def benchmark_dir(self) -> Path:
        return self.root / "benchmark"

    def baseline_dir(self, kind: str) -> Path:
        return self.root / "baselines" / kind

    @property
    def direct_dir(self) -> Path:
        """The "w/o res" model (model.target=direct) the benchmark trains: a run folder of its own."""
        return self.root / "direct"

    def control(self, name: str) -> RunFolder:
        return RunFolder(self.root / "controls" / name)

    def ablation_dir(self, grid: str) -> Path:
        """`ablations/<grid>/`: an ablation grid run on this run's dataset (notebook 06)."""
        return self.root / "ablations" / grid

    @property
    def real_sample_dir(self) -> Path:
        return self.root / "real_sample"

    @property
    def notebooks_dir(self) -> Path:
        return self.root / "notebooks"

    def metrics_path(self, notebook: str) -> Path:
        """`notebooks/<name>.metrics.json`, the numbers a notebook writes (read by the report and the tests)."""
        return self.notebooks_dir / f"{notebook}.metrics.json"

    def write_metrics(self, notebook: str, metrics: dict) -> Path:
        path = self.metrics_path(notebook)
        atomic_write_json(path, metrics)
        return path

    def read_metrics(self, notebook: str) -> dict:
        path = self.metrics_path(notebook)
        return json.loads(path.read_text()) if path.is_file() else {}

    @property
    def index_html(self) -> Path:
        return self.root / "index.html"


def prepare_data(run: RunFolder | str | Path, cfg: Config, progress: bool = True) -> DepthLayout:
    """Open the run's dataset; generate the procedural one first when `data.root == "generate"`
    (resumable: finished scenes are kept; a finished dataset is made once and reused by every later step,
    also by ablation variants that link it with other `data.synth_*` values: a new dataset is a new run)."""
    run = as_run(run)
    root = run.dataset_root(cfg)
    d = cfg.data
    if d.root == "generate" and _complete_layout(root):
        layout = DepthLayout(root)
        world = layout.meta.get("world", "procedural")
        if world != d.world:
            raise ConfigError(
                f"the run's dataset {root} is of the {world!r} world but data.world = {d.world!r}: a new world is a "
                "new run folder"
            )
        if layout.meta.get("frames_per_scene") not in (None, d.synth_frames) and progress:
            print(f"note: reusing the run's dataset {root} ({layout.meta.get('frames_per_scene')} frames per scene)")
        return layout
    if d.root == "generate":
        from sim2real_kit.data.synth import synthesize

        return synthesize(
            root,
            scenes=d.synth_scenes,
            frames=d.synth_frames,
            seed=cfg.seed,
            width=d.synth_width,
            height=d.synth_height,
            val_fraction=d.val_fraction,
            benchmark_fraction=d.benchmark_fraction,
            world=d.world,
            progress=progress,
            workers=d.synth_workers,
        )
    if not root.is_dir():
        raise MissingArtifactError(f"data.root {root} does not exist (set data.root=/path/to/dataset)")
    return DepthLayout(root)


def _complete_layout(root: Path) -> bool:
    """A generated dataset whose split lists exist and whose every listed scene is finished."""
    lists = [root / "lasa_depth" / f"{split}.lst" for split in ("train", "val")]
    if not all(p.is_file() for p in lists):
        return False
    scenes = {line.split("/")[0] for p in lists for line in p.read_text().split()}
    return bool(scenes) and all((root / "lasa_depth" / s / ".done").is_file() for s in scenes)


def resolve_config(
    run: RunFolder | str | Path,
    preset: str = "tiny",
    config_file: str | Path | None = None,
    overrides=(),
    quick: bool = False,
    seed: int | None = None,
    save: bool = True,
) -> Config:
    """The config of one notebook or CLI call, resolved once and then passed on: the run's config.yaml when
    it exists (a later step), else the preset (+ `config_file`); then the `quick` overlay (CI sizes), the
    seed and the `a.b=c` overrides; saved back to config.yaml (unless `save=False`)."""
    run = as_run(run)
    if run.has_config():
        if config_file:
            raise ConfigError(f"{run.config_path} exists; a --config file applies only to a new run folder")
        cfg = run.load_config()
        if quick:
            overlay(cfg, "quick")
    else:
        cfg = load_config(preset, config_file, quick=quick)
    cfg.override([*([f"seed={int(seed)}"] if seed is not None else []), *(overrides or ())])
    if save:
        run.save_config(cfg)
    return cfg


def as_run(run: RunFolder | str | Path) -> RunFolder:
    """A RunFolder from a RunFolder or a path."""
    return run if isinstance(run, RunFolder) else RunFolder(run)


def read_json(path: str | Path) -> dict:
    """A JSON file's object, {} when the file does not exist."""
    p = Path(path)
    return json.loads(p.read_text()) if p.is_file() else {}
