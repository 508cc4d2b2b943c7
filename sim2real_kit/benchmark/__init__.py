"""The benchmark: every simulator of a run in one table (DESIGN §5; the paper's Table 4 analog of
Sec. 4.4, the discriminator accuracy of Sec. 4.5 and the downstream Tables 1-3 analogs).

On one split (validation by default) of a run folder, each simulator turns the CAD frames of the
run's samples (model size, metres) into simulated captures, seed by seed, and is scored against
the real captures of the same views:

1. depth realism: AbsRel, RMSE, δ1 of simulated vs real depth; Wasserstein-1 of the residuals
   (CAD − simulated vs CAD − real, mm) on the pixels valid in CAD, simulated and real with both |residual|
   < `data.max_diff_m` (`w1_mm`), the same by distance to CAD depth edges (0-2 / 2-5 / > 5 px) and by CAD
   incidence (0-30 / 30-60 / 60-90°), and the release's pooled W1 (`w1_pooled_mm`: each map over its own
   pixels, every magnitude); the tail (% of valid pixels with |residual| >= max diff) next to the real one;
   hole rates (all / at CAD edges / flat) next to the real ones and their absolute gap; residuals at edges
   vs flat areas;
2. 3D realism: each scene's frames fused by TSDF (`fusion.fuse_frames`, model-frame camera, the
   frames' poses) and compared with the fused real capture of that scene by the DisCo metrics
   (`metrics.disco_metrics`, normalised per scene): mIoU %, CD-L2 ×1000, F-score %; and per object, as
   DisCo scores instances (`obj_*`, when the layout has instance ids): the simulated vs the real points of
   each object's CAD pixels over its scene's frames, normalised by the object's CAD points, mean over objects;
3. the share of the simulator's patches that the frozen Stage-I discriminator judges fake (%);
4. the downstream task (`downstream.run_downstream`): networks trained on the simulator's output of
   the benchmark split (scenes held out of every simulator's training: `benchmark.lst`), tested on real
   captures of the split;
5. stability: spread of the output over seeds (mean per-pixel std, mm) and disagreement of
   consecutive views of a scene (`metrics.view_consistency`, mm), next to the same on real and CAD.

Simulators (`SIMULATORS`): `cad` (w/o sim), `random` (Gaussian + dropout), `physical` (a textbook
Kinect noise model, `data.sensor.GenericSensor`, on the full-resolution CAD depth with the dataset's camera
and incidence from CAD normals, then the evaluation crop / resize: `physical_native`),
`pix2pix`, `cyclegan` (`models.baselines`, trained into `run_dir/baselines/<kind>/`), `direct` (a
pipeline trained with `model.target=direct` in `run_dir/direct/`), `stage1`..`stage3` (the run's
saved samples, re-sampled for seeds > 0) and `real` (the reference row: the ceiling, W1 0, CD 0).
A simulator whose artifacts are missing gets a row saying why; frames sets that differ between
stages are an error naming the frames.

Outputs in `out` (default `run_dir/benchmark/`, all written atomically): `results.csv` (one row per
simulator × seed), `results.md` (one table, mean ± std over seeds, best per column in bold when it stands
out of the seeds' spread),
`summary.json` (nested: what notebook 05 writes into its metrics.json), `figures/*.png` bar charts
and `meshes/<scene>_<sim>.ply` (first scene: real, cad and the best stage). open3d is used only
through `fusion` (imported when `fuse=True`).
"""

from sim2real_kit.benchmark.downstream_eval import DOWNSTREAM_METRICS, run_benchmark_downstream
from sim2real_kit.benchmark.evaluate import evaluate_run
from sim2real_kit.benchmark.realism import (
    ObjectRef,
    depth_realism,
    fuse_scenes,
    object_realism,
    object_references,
    realism_3d,
    view_consistency_mm,
)
from sim2real_kit.benchmark.simulators import (
    LABELS,
    REFERENCE,
    SIMULATORS,
    Simulator,
    available_simulators,
    benchmark_samples,
    chain_simulator,
    make_simulator,
    physical_native,
)
from sim2real_kit.benchmark.tables import (
    COLUMNS,
    DOWNSTREAM_COLUMNS,
    FIGURES,
    THEMES,
    W1_BIN_GROUPS,
    BenchmarkResult,
    Column,
    bar_chart,
    best_entries,
    binned_bars,
    compare_table,
    markdown_table,
)
from sim2real_kit.benchmark.two_sample import effects_heatmap, effects_markdown, effects_matrix
from sim2real_kit.geometry import cad_incidence, cad_normals  # their home; re-exported for the benchmark's users
from sim2real_kit.report import write_csv

__all__ = [
    "chain_simulator",
    "SIMULATORS",
    "LABELS",
    "REFERENCE",
    "COLUMNS",
    "DOWNSTREAM_COLUMNS",
    "DOWNSTREAM_METRICS",
    "FIGURES",
    "Column",
    "Simulator",
    "BenchmarkResult",
    "available_simulators",
    "make_simulator",
    "benchmark_samples",
    "physical_native",
    "cad_normals",
    "cad_incidence",
    "depth_realism",
    "fuse_scenes",
    "realism_3d",
    "object_references",
    "object_realism",
    "ObjectRef",
    "view_consistency_mm",
    "run_benchmark_downstream",
    "compare_table",
    "markdown_table",
    "best_entries",
    "write_csv",
    "bar_chart",
    "binned_bars",
    "effects_heatmap",
    "effects_markdown",
    "effects_matrix",
    "THEMES",
    "W1_BIN_GROUPS",
    "evaluate_run",
]
