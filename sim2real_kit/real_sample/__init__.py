"""The real-sensor track: the kit's simulators against a real depth sensor (paper Sec. 4's evaluation, on
the shipped YCB-Video sample instead of LASA).

`data/ycbv_sample` holds five real frames of YCB-Video (Xiang et al., PoseCNN, RSS 2018; objects of the
YCB set, Calli et al. 2015): Asus Xtion depth (PrimeSense structured light, 640x480, 0.1 mm units),
object meshes and exact object poses. `data.convert.import_ycbv` renders the CAD depth of the posed
meshes, so every pair is real capture vs CAD of the *same view*; CAD exists on the three objects only
(0 on table and wall, as in LASA). Everything here is measured on object pixels (label id > 0 and CAD > 0).

1. `import_real_sample(run_dir)`: the sample into `run_dir/real_sample/data` (`lasa_depth` layout), once.
2. `sample_summary`: what the real sensor does to the CAD (|CAD - real|, holes, edges vs flat) for notebook 01.
3. The physical baselines of the benchmark (`benchmark.make_simulator`: clean CAD, random noise, the
   textbook Kinect v1 model of Nguyen et al. 2012, the Redwood model of Choi et al. 2015) run on the
   sample's CAD and are scored against the real sensor with the benchmark's own metric functions
   (`benchmark.depth_realism`: residual W1, hole rates, edge / flat residuals; `metrics.residuals` for
   the |residual| percentiles).
4. A few-shot Stage-I (`HeldOutCrops`, `train_heldout_stage1`): trained on native-resolution crops (side =
   the preset's model size) of the real frames with one object held out: on its pixels the training maps
   carry the CAD only and the loss weight is 0, so its real depth never reaches the model. The trained
   pipeline then simulates model-size tiles covering every object and is scored on exactly the held-out
   object's pixels, beside the baselines. The five frames come from an almost static camera (< 1 mm
   apart), so this is a few-shot demonstration on one scene, not a generalisation measure. Holes as
   `data.holes` / `model.validity` say: none (`mask`), a validity channel, or (`model.validity: head`) a
   validity head fit on the same training pixels (`heldout_validity_head`) that draws them.

5. Train on some samples, test on others (`evaluate_real_sample(train_samples=..., test_samples=...)`, `sim2real
   evaluate-real --train-sample A [B ...] --test-sample C [D ...]`): the same Stage-I trained on every object of
   the training samples' frames, scored with the baselines on the test samples' object pixels and silhouettes.
   Samples may be YCB-Video or BOP folders (e.g. LM-O's one Kinect v1 frame, a test-only sample: it is scored on,
   never trained on) or imported layouts; no test frame reaches the training data. With the data at hand the one
   pair is YCB-Video (Xtion) -> LM-O (Kinect v1): cross-scene and cross-sensor at once.

`evaluate_real_sample` does 1, 3 and 4 (or 5) and writes `run_dir/benchmark/real_sample/`: results.csv (one row
per region x simulator x seed), results.md, summary.json and figures/*.png. `start_real_sample` runs it in a
spawned process beside the benchmark (notebook 05) and `.result()` returns the same RealSampleResult.
"""

from sim2real_kit.real_sample.evaluate import RealSampleResult, evaluate_real_sample
from sim2real_kit.real_sample.fewshot import (
    HeldOutCrops,
    heldout_dataset,
    heldout_validity_head,
    simulate_tiles,
    train_heldout_stage1,
)
from sim2real_kit.real_sample.frames import (
    CROSS_REGIONS,
    DEFAULT_SAMPLE,
    REGIONS,
    RealFrames,
    concat_frames,
    import_real_sample,
    load_frames,
    resolve_holdout,
    resolve_sample,
    sample_kind,
    sensor_of,
)
from sim2real_kit.real_sample.job import start_real_sample, usable_cores
from sim2real_kit.real_sample.measure import (
    baseline_outputs,
    baseline_simulators,
    compare_worlds,
    region_metrics,
    sample_summary,
)
from sim2real_kit.tiling import blend_tiles, blend_window, seam_ratio, tile_boxes  # the library's tiling, re-exported

__all__ = [
    "start_real_sample",
    "usable_cores",
    "DEFAULT_SAMPLE",
    "REGIONS",
    "CROSS_REGIONS",
    "sample_kind",
    "sensor_of",
    "concat_frames",
    "RealFrames",
    "RealSampleResult",
    "HeldOutCrops",
    "resolve_sample",
    "import_real_sample",
    "load_frames",
    "resolve_holdout",
    "region_metrics",
    "sample_summary",
    "compare_worlds",
    "baseline_simulators",
    "baseline_outputs",
    "heldout_dataset",
    "train_heldout_stage1",
    "heldout_validity_head",
    "tile_boxes",
    "simulate_tiles",
    "blend_tiles",
    "blend_window",
    "seam_ratio",
    "evaluate_real_sample",
]
