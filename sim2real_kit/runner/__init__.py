"""Headless execution of the kit's notebooks with papermill, an HTML index of a run, ablation
grids over config switches (the paper's Tab. 5-6 ablations: w/o residual, w/o re-weighting,
w/o binarisation, discriminator thresholds, number of stages, CAD guidance) and notebook
hygiene checks (DESIGN §6).

Modules: ``notebooks`` (where the notebooks are, what parameters each declares, their expected times),
``execute`` (:func:`run_notebooks`, papermill), ``index`` (:func:`write_index`, the run report index.html),
``story`` (the report's numbers from the notebooks' metrics.json), ``grid`` (grid
files, :func:`run_grid`, :func:`summarize_grid`, :func:`ablation_axis`), ``jobs`` (variant-seeds,
worker processes), ``summary`` (results.csv / summary.csv / summary.md), ``hygiene``
(:func:`check_notebook`). Every public name is importable from ``sim2real_kit.runner``.

Notebook conventions
--------------------
Every notebook holds exactly one cell tagged ``parameters`` with literals only:
``run_dir``, ``preset``, ``quick``, ``seed``, ``overrides`` (list of ``"a.b=c"`` strings) plus its
own names. The runner injects ``run_dir`` and, of the parameters it is given, only the names a
notebook declares; a name that no notebook declares is an error (papermill would only warn).
Its last cell writes ``run_dir/notebooks/NN_name.metrics.json``; notebooks read what earlier ones
wrote into ``run_dir``.

A run folder after :func:`run_notebooks` and :func:`write_index`::

    run_dir/notebooks/NN_name.ipynb          executed copy (papermill)
    run_dir/notebooks/NN_name.metrics.json   written by the notebook itself
    run_dir/notebooks/NN_name.html           rendered by nbconvert (write_index)
    run_dir/notebooks/run.json               status, duration, error of every notebook run
    run_dir/notebooks/figures/NN_k.png       the PNG outputs of the executed notebooks (write_index)
    run_dir/index.html                       the run report: the method's story in numbers, the benchmark,
                                             each notebook's status / time / headline numbers, figures, links

Ablation grid file (YAML)
-------------------------
::

    name: paper                      # required; identifies the grid's output folder
    description: "..."               # optional, free text
    setup: [01_data]                 # optional: notebooks run ONCE (seed 0) into out_dir/_setup/;
                                     #   its config.yaml + provenance.json are copied and its data/
                                     #   linked into every variant-seed folder before it runs
    notebooks: [02_stage1, 03_discriminator, 04_stage2, 05_benchmark]   # required: run per variant-seed
    base: {preset: tiny, quick: true, overrides: []}   # parameters common to every variant
    seeds: [0, 1]                    # optional, default [0]; each variant runs once per seed
    metrics: [stage1.w1_mm, ...]     # optional: summary columns (dotted keys into the merged
                                     #   metrics {notebook_short_name: metrics}); default: every
                                     #   numeric metric
    variants:                        # required, at least one
      full: {}                       # base as is
      wo_res: {overrides: [model.target=direct]}          # appended to base overrides
      small_lr: {parameters: {steps: 50}, overrides: [train.lr=1e-4]}   # extra notebook parameters

Valid top-level keys: name, description, setup, notebooks, base, seeds, metrics, variants; valid
variant keys: overrides, parameters. Notebook names are file names without ``.ipynb`` looked up in
the repository's ``notebooks/`` (or the folder passed as ``notebooks=``); the *short name* of
``02_stage1`` is ``stage1``. ``seed`` and ``run_dir`` are set by the grid, never in ``base``.

Output folder of a grid::

    out_dir/grid.yaml  grid.json          copy of the grid file + its identity hash
    out_dir/_setup/                       setup notebooks' run folder (when `setup` is given)
    out_dir/<variant>/seed<k>/            a run folder (run_notebooks) + done.json when finished
    out_dir/results.csv                   one row per variant-seed (status, duration, all metrics)
    out_dir/summary.csv  summary.md       one row per variant: mean ± std over finished seeds

The identity hash covers name, setup, notebooks, base (after the ``quick`` / ``preset``
overrides) and variants; a folder written by a grid with another hash is refused. ``seeds`` and
``metrics`` are not part of it: adding seeds runs only the new ones, changing ``metrics`` only
re-summarises.
Re-running skips every variant-seed holding a ``done.json`` (written atomically at its end).
With ``jobs > 1`` variant-seeds run in worker processes (``python -m sim2real_kit.runner --job``).
"""

from sim2real_kit.runner.execute import NotebookFailure, NotebookResult, RunReport, run_notebooks
from sim2real_kit.runner.grid import (
    GRID_KEYS,
    SETUP_DIR,
    VARIANT_KEYS,
    Grid,
    GridFailure,
    ablation_axis,
    load_grid,
    run_grid,
    summarize_grid,
)
from sim2real_kit.runner.hygiene import check_notebook, check_notebooks
from sim2real_kit.runner.index import flatten_metrics, write_index
from sim2real_kit.runner.jobs import SHARED_FROM_SETUP
from sim2real_kit.runner.notebooks import (
    COMMON_PARAMETERS,
    EXPECTED_SECONDS,
    NOTEBOOK_DIR,
    REPO_ROOT,
    default_notebooks,
    expected_seconds,
    notebook_parameters,
    notebook_timeout,
    short_name,
)
from sim2real_kit.runner.summary import GridReport

__all__ = [
    "REPO_ROOT",
    "NOTEBOOK_DIR",
    "COMMON_PARAMETERS",
    "EXPECTED_SECONDS",
    "GRID_KEYS",
    "VARIANT_KEYS",
    "SHARED_FROM_SETUP",
    "SETUP_DIR",
    "NotebookFailure",
    "GridFailure",
    "NotebookResult",
    "RunReport",
    "GridReport",
    "Grid",
    "short_name",
    "default_notebooks",
    "notebook_parameters",
    "expected_seconds",
    "notebook_timeout",
    "run_notebooks",
    "flatten_metrics",
    "write_index",
    "load_grid",
    "run_grid",
    "summarize_grid",
    "ablation_axis",
    "check_notebook",
    "check_notebooks",
]
