"""Headless execution of the kit's notebooks with papermill, an HTML index of a run, ablation
grids over config switches (the paper's Tab. 5-6 ablations: w/o residual, w/o re-weighting,
w/o binarisation, discriminator thresholds, number of stages, CAD guidance) and notebook
hygiene checks (DESIGN §6).

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
    run_dir/index.html                       links + one table of all metrics

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

from __future__ import annotations

import ast
import contextlib
import csv
import dataclasses
import hashlib
import html
import io
import json
import logging
import math
import os
import re
import shutil
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sim2real_kit.errors import ConfigError, Sim2RealError
from sim2real_kit.io import atomic_write_json, atomic_write_text

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
COMMON_PARAMETERS = ("run_dir", "preset", "quick", "seed", "overrides")
GRID_KEYS = ("name", "description", "setup", "notebooks", "base", "seeds", "metrics", "variants")
VARIANT_KEYS = ("overrides", "parameters")
SHARED_FROM_SETUP = ("config.yaml", "provenance.json", "data")  # files copied, folders linked
SETUP_DIR = "_setup"
# the kernel warns on stderr about unencrypted local TCP at every start; keep the console readable
_KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL"]
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class NotebookFailure(Sim2RealError):
    """A notebook raised (or timed out) under papermill; the message names the notebook, the cell
    (0-based index in the source notebook and its first line), the exception and the executed copy.

    Attributes: notebook, cell_index, executed_cell_index, exec_count, first_line, ename, evalue,
    traceback (list of str), executed_path, report (the RunReport so far).
    """

    def __init__(
        self,
        notebook: str,
        *,
        cell_index: int | None,
        first_line: str,
        ename: str,
        evalue: str,
        executed_path: Path,
        exec_count: int | None = None,
        executed_cell_index: int | None = None,
        traceback: list[str] | None = None,
    ):
        self.notebook = notebook
        self.cell_index = cell_index
        self.executed_cell_index = executed_cell_index
        self.exec_count = exec_count
        self.first_line = first_line
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback or []
        self.executed_path = Path(executed_path)
        self.report: RunReport | None = None
        if cell_index is None:
            where = "in its injected parameters cell" if executed_cell_index is not None else "outside any cell"
        else:
            count = f", In [{exec_count}]" if exec_count is not None else ""
            where = f"in cell {cell_index} (0-based{count}) `{first_line}`"
        copy = f"executed copy: {executed_path}" if self.executed_path.is_file() else "no executed copy was written"
        super().__init__(f"notebook {notebook} failed {where}: {ename}: {evalue}\n  {copy}")


class GridFailure(Sim2RealError):
    """Some variant-seeds of a grid failed; the others ran and were summarised (`.report`)."""

    def __init__(self, message: str, report: GridReport):
        self.report = report
        super().__init__(message)


@dataclass
class NotebookResult:
    """What happened to one notebook of a run."""

    name: str  # "02_stage1"
    source: Path  # the notebook that was executed
    executed: Path  # run_dir/notebooks/02_stage1.ipynb
    status: str = "not run"  # "ok" | "failed" | "not run"
    duration_s: float | None = None  # wall clock incl. kernel start, seconds
    metrics: dict | None = None  # content of NN_name.metrics.json (None when absent)
    error: str | None = None  # NotebookFailure message when failed
    parameters: dict = field(default_factory=dict)  # what was injected

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["source"], d["executed"] = str(self.source), str(self.executed)
        return d


@dataclass
class RunReport:
    """Result of :func:`run_notebooks`: one NotebookResult per notebook, in order."""

    run_dir: Path
    notebooks: list[NotebookResult]

    @property
    def ok(self) -> bool:
        return all(r.status == "ok" for r in self.notebooks)

    @property
    def failed(self) -> NotebookResult | None:
        return next((r for r in self.notebooks if r.status == "failed"), None)

    @property
    def metrics(self) -> dict[str, dict]:
        """Merged metrics {short_name: metrics} of the notebooks that wrote some."""
        return {short_name(r.name): r.metrics for r in self.notebooks if r.metrics is not None}

    @property
    def duration_s(self) -> float:
        return sum(r.duration_s or 0.0 for r in self.notebooks)


@dataclass
class GridReport:
    """Result of :func:`run_grid` (also what a re-run on a finished folder returns)."""

    name: str
    out_dir: Path
    results: list[dict]  # results.csv rows: variant, seed, status, duration_s, run_dir, metrics...
    summary: list[dict]  # summary.csv rows: variant, n, <metric>.mean, <metric>.std
    metrics: list[str]  # the summarised metric keys (dotted)
    ran: list[str] = field(default_factory=list)  # "variant/seed0" executed by this call
    skipped: list[str] = field(default_factory=list)  # already done before this call
    failed: dict[str, str] = field(default_factory=dict)  # "variant/seed0" -> error message
    missing_metrics: list[str] = field(default_factory=list)  # requested but found in no run


# ============================================================================ notebooks
def short_name(name: str) -> str:
    """`02_stage1` -> `stage1` (the key of a notebook's metrics in merged tables)."""
    return re.sub(r"^\d+_", "", name)


def default_notebooks(notebook_dir: str | Path | None = None) -> list[Path]:
    """The kit's notebook sequence: sorted `NN_*.ipynb` of `notebook_dir` (default: repo notebooks/)."""
    return sorted(Path(notebook_dir or NOTEBOOK_DIR).glob("[0-9][0-9]_*.ipynb"))


def notebook_parameters(path: str | Path) -> dict[str, str]:
    """Names declared in a notebook's `parameters` cell -> their default's source text.

    Parsed with `ast`: `papermill.inspect_notebook` skips every line holding more than one `=`,
    e.g. `overrides = ["model.target=direct"]` or a comment `# "a.b=c" strings`; it is only the
    fallback for a cell that is not plain Python (magics)."""
    import nbformat

    path = Path(path)
    if not path.is_file():
        raise ConfigError("notebook does not exist", path)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:
        raise ConfigError(f"not a readable notebook: {type(e).__name__}: {e}", path) from None
    cell = next((c for c in nb.cells if "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        return {}
    try:
        tree = ast.parse(cell.source)
    except SyntaxError:
        import papermill

        try:
            return {name: p["default"] for name, p in papermill.inspect_notebook(str(path)).items()}
        except Exception as e:  # no kernelspec, unknown language ...
            raise ConfigError(f"cannot inspect the notebook's parameters: {type(e).__name__}: {e}", path) from None
    declared = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            targets = [t for t in stmt.targets if isinstance(t, ast.Name)]
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            targets = [stmt.target]
        else:
            continue
        for t in targets:
            declared[t.id] = ast.get_source_segment(cell.source, stmt.value) if stmt.value is not None else ""
    return declared


def _resolve_notebooks(notebooks, notebook_dir: Path | None = None, source: str = "notebooks") -> list[Path]:
    """Paths, or names without `.ipynb` looked up in `notebook_dir`; must exist and be unique."""
    lookup = Path(notebook_dir or NOTEBOOK_DIR)
    paths = []
    for item in notebooks:
        p = Path(item)
        if p.suffix != ".ipynb":
            p = lookup / f"{item}.ipynb"
        if not p.is_file():
            available = ", ".join(q.stem for q in default_notebooks(lookup)) or "none"
            raise ConfigError(f"{source}: notebook {str(item)!r} not found ({p}); available in {lookup}: {available}")
        paths.append(p.resolve())
    stems = [p.stem for p in paths]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise ConfigError(f"{source}: notebook names must be unique (they name the executed copies): {dup}")
    return paths


def _plan_parameters(
    paths: list[Path], parameters: dict, per_notebook: dict, source: str = "parameters"
) -> tuple[dict[str, dict], dict[str, dict]]:
    """Which parameters each notebook receives, and what each declares ({stem: {name: default}});
    a name no notebook declares is a ConfigError listing every notebook's parameters."""
    declared = {p.stem: notebook_parameters(p) for p in paths}

    def listing() -> str:
        return "; ".join(f"{stem}: {', '.join(names) or '(no parameters cell)'}" for stem, names in declared.items())

    for reserved in ("run_dir",):
        if reserved in parameters:
            raise ConfigError(f"{source}: {reserved!r} is set by the runner, do not pass it")
    unknown = sorted(k for k in parameters if not any(k in names for names in declared.values()))
    if unknown:
        raise ConfigError(
            f"{source}: parameter(s) {', '.join(unknown)} declared by no notebook; parameters per notebook: {listing()}"
        )
    for stem, extra in (per_notebook or {}).items():
        if stem not in declared:
            raise ConfigError(f"per_notebook: {stem!r} is not in the sequence ({', '.join(declared)})")
        bad = sorted(k for k in extra if k not in declared[stem])
        if bad:
            raise ConfigError(
                f"per_notebook[{stem!r}]: unknown parameter(s) {', '.join(bad)}; "
                f"{stem} declares: {', '.join(declared[stem]) or '(no parameters cell)'}",
                paths[[p.stem for p in paths].index(stem)],
            )
    plan = {}
    for p in paths:
        names = declared[p.stem]
        injected = {k: v for k, v in parameters.items() if k in names}
        injected.update((per_notebook or {}).get(p.stem, {}))
        plan[p.stem] = injected
    return plan, declared


def _declared_only(parameters: dict, paths: list[Path]) -> dict:
    """The parameters that at least one of `paths` declares."""
    names = set().union(*(notebook_parameters(p) for p in paths)) if paths else set()
    return {k: v for k, v in parameters.items() if k in names}


def _validate_config(parameters: dict, source: str) -> None:
    """Unknown preset or override key -> ConfigError now, not hours into a run."""
    if "preset" not in parameters and "overrides" not in parameters:
        return
    from sim2real_kit.config import load_config

    overrides = parameters.get("overrides") or []
    if not isinstance(overrides, (list, tuple)) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(f"{source}: overrides must be a list of 'a.b=c' strings, got {overrides!r}")
    try:
        load_config(parameters.get("preset", "tiny"), overrides=list(overrides))
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _literal(value: Any) -> Any:
    """Parameter values papermill writes as Python literals: Path -> str, tuple -> list."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_literal(v) for v in value]
    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    return value


def _first_line(source: str) -> str:
    line = next((s.strip() for s in source.splitlines() if s.strip()), "")
    return line if len(line) <= 80 else line[:77] + "..."


def _fmt_duration(seconds: float) -> str:
    if seconds < 100:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:02.0f} min"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_run_json(run_dir: Path, results: list[NotebookResult]) -> None:
    """run_dir/notebooks/run.json: every notebook run into this folder, in run order (merged with
    earlier calls, so running 01-03 then 04-06 lists all six)."""
    path = run_dir / "notebooks" / "run.json"
    previous = _read_json(path) or {}
    entries = previous.get("notebooks", {}) if isinstance(previous, dict) else {}
    order = [n for n in (previous.get("order") or sorted(entries)) if n in entries] if entries else []
    for r in results:
        entries[r.name] = r.to_dict()
        if r.name not in order:
            order.append(r.name)
    atomic_write_json(path, {"run_dir": str(run_dir), "order": order, "notebooks": entries})


def _failure_from_papermill(err, name: str, executed: Path, injected_index: int | None) -> NotebookFailure:
    """PapermillExecutionError (cell index into the parameterised notebook) -> NotebookFailure."""
    from papermill.exceptions import strip_color

    idx = err.cell_index
    if injected_index is None or idx < injected_index:
        source_idx = idx
    elif idx == injected_index:
        source_idx = None
    else:
        source_idx = idx - 1  # the injected-parameters cell is not in the source notebook
    return NotebookFailure(
        name,
        cell_index=source_idx,
        executed_cell_index=idx,
        exec_count=err.exec_count,
        first_line=_first_line(err.source or ""),
        ename=err.ename,
        evalue=strip_color(str(err.evalue)),
        executed_path=executed,
        traceback=[strip_color(t) for t in (err.traceback or [])],
    )


@contextlib.contextmanager
def _quiet_papermill():
    """Papermill's parameter warnings are replaced by the runner's own checks (errors, not warnings);
    it also mis-reads `a=b` strings in parameters cells ("Unable to parse line")."""
    logger = logging.getLogger("papermill")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _execute_one(
    path: Path,
    executed: Path,
    parameters: dict,
    *,
    timeout_s: float | None,
    cell_timeout_s: float | None,
    kernel_name: str,
) -> None:
    """Run one notebook; raises NotebookFailure on an exception in a cell, a timeout or a dead kernel."""
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from sim2real_kit._kernel import SteadyKernelManager

    start = time.monotonic()
    current: dict = {}  # the cell nbclient is running (for timeout reports)

    def cell_timeout(cell) -> float | None:
        # per cell: the notebook's remaining wall clock, capped by the per-cell limit
        current["cell"] = cell
        limits = [t for t in (cell_timeout_s,) if t]
        if timeout_s:
            limits.append(max(timeout_s - (time.monotonic() - start), 1.0))
        return min(limits) if limits else None

    source_nb = nbformat.read(path, as_version=4)
    param_idx = next((i for i, c in enumerate(source_nb.cells) if "parameters" in c.metadata.get("tags", [])), None)
    injected_index = param_idx + 1 if (parameters and param_idx is not None) else (0 if parameters else None)
    try:
        with _quiet_papermill():
            papermill.execute_notebook(
                str(path),
                str(executed),
                parameters=parameters,
                kernel_name=kernel_name,
                progress_bar=False,
                cwd=str(path.parent),  # as if opened in Jupyter next to the notebook
                timeout_func=cell_timeout,
                extra_arguments=_KERNEL_ARGS,
                kernel_manager_class=SteadyKernelManager,  # a missed socket wake-up costs 0.5 s, not the run
            )
    except PapermillExecutionError as err:
        raise _failure_from_papermill(err, path.stem, executed, injected_index) from None
    except Exception as err:  # CellTimeoutError, DeadKernelError, kernel start failures
        cell = current.get("cell")
        executed_idx = None
        if cell is not None and executed.is_file():
            with contextlib.suppress(Exception):
                ex_nb = nbformat.read(executed, as_version=4)
                executed_idx = next(i for i, c in enumerate(ex_nb.cells) if c.get("id") == cell.get("id"))
        if executed_idx is None and cell is not None:
            # not saved yet: locate the cell by its source in the parameterised order
            executed_idx = next((i for i, c in enumerate(source_nb.cells) if c.source == cell.source), None)
            if executed_idx is not None and injected_index is not None and executed_idx >= injected_index:
                executed_idx += 1
        src_idx = executed_idx
        if executed_idx is not None and injected_index is not None and executed_idx > injected_index:
            src_idx = executed_idx - 1
        elapsed = time.monotonic() - start
        evalue = str(err).strip().splitlines()[0] if str(err).strip() else ""
        if type(err).__name__ == "CellTimeoutError":
            evalue = (
                f"{evalue} (after {_fmt_duration(elapsed)}; timeout_s={timeout_s}, cell_timeout_s={cell_timeout_s})"
            )
        raise NotebookFailure(
            path.stem,
            cell_index=src_idx,
            executed_cell_index=executed_idx,
            first_line=_first_line(cell.source) if cell is not None else "",
            ename=type(err).__name__,
            evalue=evalue,
            executed_path=executed,
        ) from err
    elapsed = time.monotonic() - start
    if timeout_s and elapsed > timeout_s:  # kernel start/shutdown counted too
        raise NotebookFailure(
            path.stem,
            cell_index=None,
            first_line="",
            ename="Timeout",
            evalue=f"notebook took {_fmt_duration(elapsed)} > timeout_s={timeout_s}",
            executed_path=executed,
        )


def run_notebooks(
    run_dir: str | Path,
    notebooks: list[str | Path] | None = None,
    parameters: dict | None = None,
    per_notebook: dict[str, dict] | None = None,
    timeout_s: float | None = None,
    cell_timeout_s: float | None = None,
    kernel_name: str = "python3",
    progress: bool = True,
    index: bool = False,
    _label: str = "",
) -> RunReport:
    """Execute notebooks in order with papermill into `run_dir/notebooks/NN_name.ipynb`.

    notebooks: paths, or names without `.ipynb` in the repo's notebooks/; default: all `NN_*.ipynb`.
    parameters: common parameters (preset, quick, seed, overrides, ...), each injected into the
        notebooks that declare it; a name no notebook declares is a ConfigError. `run_dir` is always
        injected (absolute). preset/overrides are validated with `load_config` before anything runs.
    per_notebook: {notebook_name: {param: value}} on top, for that notebook only (must be declared).
    timeout_s: wall clock per notebook (seconds, kernel start included); each cell gets the time left.
    cell_timeout_s: limit per cell (seconds). index: write run_dir/index.html at the end (also on failure).
    Prints `[2/6] 02_stage1 … ok (83 s)` per notebook; stops at the first failure by raising
    NotebookFailure (its `.report` holds the RunReport; later notebooks are "not run").
    Executed copies, metrics.json and html of the notebooks in the sequence are removed first, so
    nothing stale survives a failed re-run.
    """
    run_dir = Path(run_dir).resolve()
    parameters = {k: _literal(v) for k, v in (parameters or {}).items()}
    per_notebook = {nb: {k: _literal(v) for k, v in extra.items()} for nb, extra in (per_notebook or {}).items()}
    paths = _resolve_notebooks(notebooks if notebooks is not None else default_notebooks())
    if not paths:
        raise ConfigError(f"no notebooks to run (looked for NN_*.ipynb in {NOTEBOOK_DIR})")
    plan, declared = _plan_parameters(paths, parameters, per_notebook or {})
    _validate_config(parameters, "parameters")
    for stem, extra in (per_notebook or {}).items():
        _validate_config({**parameters, **extra}, f"per_notebook[{stem!r}]")

    nb_dir = run_dir / "notebooks"
    nb_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for p in paths:
        for suffix in (".ipynb", ".metrics.json", ".html"):
            with contextlib.suppress(FileNotFoundError):
                (nb_dir / f"{p.stem}{suffix}").unlink()
        injected = ({"run_dir": str(run_dir)} if "run_dir" in declared[p.stem] else {}) | plan[p.stem]
        results.append(NotebookResult(p.stem, p, nb_dir / f"{p.stem}.ipynb", parameters=injected))
    report = RunReport(run_dir, results)
    _write_run_json(run_dir, results)

    try:
        for i, r in enumerate(results, start=1):
            head = f"{_label}[{i}/{len(results)}] {r.name} …"
            if progress and not _label:
                print(head, end=" ", flush=True)
            start = time.monotonic()
            try:
                _execute_one(
                    r.source,
                    r.executed,
                    r.parameters,
                    timeout_s=timeout_s,
                    cell_timeout_s=cell_timeout_s,
                    kernel_name=kernel_name,
                )
            except BaseException as err:
                r.duration_s = time.monotonic() - start
                r.status = "failed"
                r.error = str(err) if isinstance(err, NotebookFailure) else f"{type(err).__name__}: {err}"
                _write_run_json(run_dir, results)
                if progress:
                    tail = f"FAILED ({_fmt_duration(r.duration_s)})"
                    print(tail if not _label else f"{head} {tail}", flush=True)
                if isinstance(err, NotebookFailure):
                    err.report = report
                raise
            r.duration_s = time.monotonic() - start
            r.status = "ok"
            metrics_path = nb_dir / f"{r.name}.metrics.json"
            r.metrics = _read_json(metrics_path) if metrics_path.is_file() else None
            _write_run_json(run_dir, results)
            if progress:
                note = "" if r.metrics is not None else ", no metrics.json"
                tail = f"ok ({_fmt_duration(r.duration_s)}{note})"
                print(tail if not _label else f"{head} {tail}", flush=True)
    finally:
        if index:
            write_index(run_dir)
    return report


# ============================================================================ index.html
def flatten_metrics(metrics: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}, "c": 2} -> {"a.b": 1, "c": 2} (nested dicts joined with dots)."""
    if not isinstance(metrics, dict):
        return {prefix.rstrip("."): metrics} if prefix else {}
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _fmt_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        text = json.dumps(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _index_entries(run_dir: Path) -> list[dict]:
    """Status of every notebook of a run, in run order: run.json first, then executed copies it
    does not list (status and duration from papermill's metadata)."""
    nb_dir = run_dir / "notebooks"
    run_json = _read_json(nb_dir / "run.json") or {}
    entries = dict(run_json.get("notebooks", {})) if isinstance(run_json, dict) else {}
    order = [n for n in run_json.get("order", sorted(entries)) if n in entries] if entries else []
    for executed in sorted(nb_dir.glob("*.ipynb")):
        if executed.stem in entries:
            continue
        meta = (_read_json(executed) or {}).get("metadata", {}).get("papermill", {})
        entries[executed.stem] = {
            "name": executed.stem,
            "status": "failed" if meta.get("exception") else "ok",
            "duration_s": meta.get("duration"),
            "error": None,
        }
        order.append(executed.stem)
    return [entries[k] for k in order]


_CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; margin-bottom: .2em; } .sub { color: #666; margin-top: 0; }
.wrap { overflow-x: auto; } table { border-collapse: collapse; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .35em .6em; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; position: sticky; top: 0; } td.l, th.l { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
.ok { color: #137333; font-weight: 600; } .failed { color: #c5221f; font-weight: 600; }
.notrun { color: #888; } pre { background: #fff4f4; border: 1px solid #f0c0c0; padding: .6em; white-space: pre-wrap; }
a { color: #1a5fb4; text-decoration: none; } a:hover { text-decoration: underline; }
"""


def _render_html(executed: Path, target: Path) -> None:
    """Executed notebook -> standalone HTML (nbconvert HTMLExporter), skipped when up to date."""
    if target.is_file() and target.stat().st_mtime >= executed.stat().st_mtime:
        return
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    atomic_write_text(target, body)


def write_index(run_dir: str | Path) -> Path:
    """Write `run_dir/index.html`: every notebook of the run (HTML render + executed copy links),
    status (ok / failed / not run), duration and all metrics in one table (nested keys dotted)."""
    run_dir = Path(run_dir).resolve()
    nb_dir = run_dir / "notebooks"
    if not nb_dir.is_dir():
        raise Sim2RealError(
            "no notebooks/ folder: run the notebooks first (run_notebooks / `sim2real notebooks`)", run_dir
        )
    rows = []
    for entry in _index_entries(run_dir):
        name = entry["name"]
        executed = nb_dir / f"{name}.ipynb"
        status = entry.get("status") or "not run"
        html_path = nb_dir / f"{name}.html"
        if executed.is_file() and status != "not run":
            try:
                _render_html(executed, html_path)
            except Exception as e:  # a broken notebook must not hide the others
                warnings.warn(f"could not render {executed} to HTML: {e}", stacklevel=2)
        metrics_path = nb_dir / f"{name}.metrics.json"
        metrics = _read_json(metrics_path) if metrics_path.is_file() and status != "not run" else None
        rows.append(
            {
                "name": name,
                "status": status,
                "duration_s": entry.get("duration_s"),
                "error": entry.get("error"),
                "html": html_path if html_path.is_file() and status != "not run" else None,
                "ipynb": executed if executed.is_file() and status != "not run" else None,
                "metrics": flatten_metrics(metrics) if isinstance(metrics, dict) else {},
            }
        )
    keys = sorted({k for r in rows for k in r["metrics"]})

    def link(path: Path | None, text: str) -> str:
        if path is None:
            return html.escape(text)
        return f'<a href="{html.escape(path.relative_to(run_dir).as_posix())}">{html.escape(text)}</a>'

    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = []
    for r in rows:
        css = {"ok": "ok", "failed": "failed"}.get(r["status"], "notrun")
        dur = _fmt_duration(r["duration_s"]) if r["duration_s"] is not None else ""
        files = link(r["html"], r["name"]) + (" " + link(r["ipynb"], "(.ipynb)") if r["ipynb"] else "")
        cells = "".join(f"<td>{html.escape(_fmt_value(r['metrics'].get(k)))}</td>" for k in keys)
        body.append(
            f'<tr><td class="l">{files}</td><td class="l {css}">{html.escape(r["status"])}</td>'
            f"<td>{dur}</td>{cells}</tr>"
        )
    errors = "".join(
        f"<h2>{html.escape(r['name'])} failed</h2><pre>{html.escape(r['error'])}</pre>" for r in rows if r["error"]
    )
    config = run_dir / "config.yaml"
    extra = ' · <a href="config.yaml">config.yaml</a>' if config.is_file() else ""
    total = sum(r["duration_s"] or 0.0 for r in rows)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sim2real_kit run {html.escape(run_dir.name)}</title>
<style>{_CSS}</style></head><body>
<h1>sim2real_kit run: {html.escape(run_dir.name)}</h1>
<p class="sub">{html.escape(str(run_dir))} · {len(rows)} notebooks · {_fmt_duration(total)} in total · \
written {time.strftime("%Y-%m-%d %H:%M:%S")}{extra}</p>
<div class="wrap"><table>
<tr><th class="l">notebook</th><th class="l">status</th><th>duration</th>{head}</tr>
{chr(10).join(body)}
</table></div>
{errors}
</body></html>
"""
    target = run_dir / "index.html"
    atomic_write_text(target, page)
    return target


# ============================================================================ ablation grids
@dataclass
class Grid:
    """A parsed grid file (see the module docstring)."""

    name: str
    source: Path
    text: str
    description: str
    setup: list[str]
    notebooks: list[str]
    base: dict
    seeds: list[int]
    metrics: list[str] | None
    variants: dict[str, dict]  # name -> {"overrides": [...], "parameters": {...}}

    def identity(self) -> dict:
        return {
            "name": self.name,
            "setup": self.setup,
            "notebooks": self.notebooks,
            "base": self.base,
            "variants": self.variants,
        }

    def hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def variant_parameters(self, variant: str, seed: int) -> dict:
        v = self.variants[variant]
        params = {k: val for k, val in self.base.items() if k != "overrides"}
        params.update(v["parameters"])
        params["overrides"] = list(self.base.get("overrides", [])) + list(v["overrides"])
        params["seed"] = seed
        return params


def _str_list(value, key: str, source: Path) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key} must be a list of strings, got {value!r}", source)
    return list(value)


def load_grid(
    grid_file: str | Path, quick: bool | None = None, seeds: list[int] | None = None, preset: str | None = None
) -> Grid:
    """Parse and check a grid YAML (see the module docstring); `quick` / `seeds` / `preset` override
    the file's `base.quick` / `seeds` / `base.preset`."""
    source = Path(grid_file).resolve()
    if not source.is_file():
        raise ConfigError("grid file does not exist", source)
    text = source.read_text()
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"not valid YAML: {e}", source) from None
    if not isinstance(d, dict):
        raise ConfigError(f"top level must be a mapping with keys {', '.join(GRID_KEYS)}", source)
    unknown = [k for k in d if k not in GRID_KEYS]
    if unknown:
        raise ConfigError(
            f"unknown grid key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(GRID_KEYS)}", source
        )
    for required in ("name", "notebooks", "variants"):
        if required not in d:
            raise ConfigError(f"missing required key {required!r}", source)
    name = d["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"name must be a simple string (letters, digits, _.-), got {name!r}", source)
    notebooks = _str_list(d["notebooks"], "notebooks", source)
    if not notebooks:
        raise ConfigError("notebooks must list at least one notebook", source)
    setup = _str_list(d.get("setup"), "setup", source)
    base = d.get("base") or {}
    if not isinstance(base, dict):
        raise ConfigError(f"base must be a mapping of notebook parameters, got {base!r}", source)
    for reserved in ("seed", "run_dir"):
        if reserved in base:
            hint = "list seeds under `seeds:`" if reserved == "seed" else "the grid sets it"
            raise ConfigError(f"base.{reserved} is not allowed ({hint})", source)
    base = dict(base)
    base["overrides"] = _str_list(base.get("overrides"), "base.overrides", source)
    if quick is not None:
        base["quick"] = bool(quick)
    if preset is not None:
        base["preset"] = preset
    seed_list = d.get("seeds", [0]) if seeds is None else list(seeds)
    if (
        not isinstance(seed_list, list)
        or not seed_list
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seed_list)
        or len(set(seed_list)) != len(seed_list)
    ):
        raise ConfigError(f"seeds must be a non-empty list of distinct integers, got {seed_list!r}", source)
    metrics = d.get("metrics")
    metrics = None if metrics is None else _str_list(metrics, "metrics", source)
    raw_variants = d["variants"]
    if not isinstance(raw_variants, dict) or not raw_variants:
        raise ConfigError("variants must be a non-empty mapping name -> {overrides, parameters}", source)
    variants = {}
    for vname, v in raw_variants.items():
        vname = str(vname)
        if not _NAME_RE.match(vname):
            raise ConfigError(f"variant name {vname!r} must be letters, digits, _.- (it names a folder)", source)
        v = v or {}
        if not isinstance(v, dict):
            raise ConfigError(f"variants.{vname} must be a mapping with keys {', '.join(VARIANT_KEYS)}", source)
        bad = [k for k in v if k not in VARIANT_KEYS]
        if bad:
            raise ConfigError(
                f"variants.{vname}: unknown key(s) {', '.join(map(repr, bad))}; valid keys: {', '.join(VARIANT_KEYS)}",
                source,
            )
        params = v.get("parameters") or {}
        if not isinstance(params, dict):
            raise ConfigError(f"variants.{vname}.parameters must be a mapping, got {params!r}", source)
        for reserved in ("seed", "run_dir", "overrides"):
            if reserved in params:
                raise ConfigError(
                    f"variants.{vname}.parameters.{reserved} is not allowed "
                    f"({'use variants.' + vname + '.overrides' if reserved == 'overrides' else 'the grid sets it'})",
                    source,
                )
        variants[vname] = {
            "overrides": _str_list(v.get("overrides"), f"variants.{vname}.overrides", source),
            "parameters": dict(params),
        }
    return Grid(
        name=name,
        source=source,
        text=text,
        description=str(d.get("description") or ""),
        setup=setup,
        notebooks=notebooks,
        base=base,
        seeds=seed_list,
        metrics=metrics,
        variants=variants,
    )


def _claim_out_dir(grid: Grid, out_dir: Path) -> None:
    """Refuse an output folder written by another grid; otherwise record this grid in it
    (grid.yaml copy, grid.json with the identity hash and the seeds / metrics of this run)."""
    record = out_dir / "grid.json"
    if record.is_file():
        other = _read_json(record) or {}
        if other.get("hash") != grid.hash():
            differ = [k for k, v in grid.identity().items() if (other.get("identity") or {}).get(k) != v]
            raise Sim2RealError(
                f"output folder belongs to grid {other.get('name')!r} (hash {other.get('hash')}, from "
                f"{other.get('source')}), not to grid {grid.name!r} (hash {grid.hash()}, from {grid.source}); "
                f"they differ in: {', '.join(differ) or '?'}. Use another output folder.",
                out_dir,
            )
    elif out_dir.is_dir() and any(out_dir.iterdir()):
        raise Sim2RealError(
            f"output folder is not empty and holds no grid.json; refusing to write grid {grid.name!r} into it", out_dir
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "grid.yaml", grid.text)
    atomic_write_json(
        record,
        {
            "name": grid.name,
            "hash": grid.hash(),
            "source": str(grid.source),
            "identity": grid.identity(),
            "description": grid.description,
            "seeds": grid.seeds,
            "metrics": grid.metrics,
        },
    )


def _prepare_from(shared_run: Path, run_dir: Path) -> None:
    """Copy config.yaml/provenance.json of a finished run and link its data/ into `run_dir`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in SHARED_FROM_SETUP:
        src, dst = shared_run / name, run_dir / name
        if src.is_file():
            shutil.copyfile(src, dst)
        elif src.is_dir():
            if dst.is_symlink() or not dst.exists():
                with contextlib.suppress(FileNotFoundError):
                    dst.unlink()
                os.symlink(os.path.relpath(src.resolve(), run_dir.resolve()), dst, target_is_directory=True)


def _run_job(job: dict) -> dict:
    """One variant-seed (picklable for the process pool): prepare, run_notebooks, done.json."""
    run_dir = Path(job["run_dir"])
    if job.get("shared_run"):
        _prepare_from(Path(job["shared_run"]), run_dir)
    start = time.monotonic()
    try:
        report = run_notebooks(
            run_dir,
            notebooks=[Path(p) for p in job["notebooks"]],
            parameters=job["parameters"],
            timeout_s=job["timeout_s"],
            kernel_name=job["kernel_name"],
            progress=job["progress"],
            _label=f"{job['label']} ",
        )
    except NotebookFailure as err:
        return {"label": job["label"], "status": "failed", "error": str(err)}
    done = {
        "grid": job["grid"],
        "grid_hash": job["grid_hash"],
        "variant": job["variant"],
        "seed": job["seed"],
        "parameters": job["parameters"],
        "duration_s": time.monotonic() - start,
        "notebooks": {r.name: r.duration_s for r in report.notebooks},
        "metrics": report.metrics,
    }
    atomic_write_json(run_dir / "done.json", done)
    return {"label": job["label"], "status": "ok", "error": None}


def _relay(stream) -> None:
    for line in stream:
        print(line, end="", flush=True)


def _run_jobs(jobs: list[dict], n_jobs: int) -> list[dict]:
    """Run variant-seeds: in this process when n_jobs == 1, else up to n_jobs worker processes
    (`python -m sim2real_kit.runner --job run_dir/grid_job.json`, independent of the caller's
    __main__, so scripts, notebooks and the CLI all work); their output is relayed line by line."""
    if n_jobs <= 1 or len(jobs) <= 1:
        return [_run_job(j) for j in jobs]
    import subprocess
    import threading

    pending, running, outcomes = list(jobs), {}, {}
    try:
        while pending or running:
            while pending and len(running) < n_jobs:
                job = pending.pop(0)
                job_file = Path(job["run_dir"]) / "grid_job.json"
                with contextlib.suppress(FileNotFoundError):
                    (job_file.parent / "grid_job_result.json").unlink()
                atomic_write_json(job_file, job)
                proc = subprocess.Popen(
                    [sys.executable, "-m", "sim2real_kit.runner", "--job", str(job_file)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                relay = threading.Thread(target=_relay, args=(proc.stdout,), daemon=True)
                relay.start()
                running[job["label"]] = (proc, relay, job_file)
            time.sleep(0.05)
            for label, (proc, relay, job_file) in list(running.items()):
                if proc.poll() is None:
                    continue
                relay.join(timeout=5)
                result = _read_json(job_file.parent / "grid_job_result.json")
                if not isinstance(result, dict):
                    result = {"label": label, "status": "failed", "error": f"worker exited with code {proc.returncode}"}
                outcomes[label] = result
                del running[label]
    finally:
        for proc, _, _ in running.values():  # interrupted: stop the workers we started
            proc.terminate()
    return [outcomes[j["label"]] for j in jobs]


def _job_main(argv: list[str]) -> int:
    """Worker entry point of `_run_jobs`: run one job file, write grid_job_result.json next to it."""
    if len(argv) != 2 or argv[0] != "--job":
        print("usage: python -m sim2real_kit.runner --job run_dir/grid_job.json", file=sys.stderr)
        return 2
    job_file = Path(argv[1])
    result = _run_job(json.loads(job_file.read_text()))
    atomic_write_json(job_file.parent / "grid_job_result.json", result)
    return 0 if result["status"] == "ok" else 1


def summarize_grid(out_dir: str | Path) -> GridReport:
    """Re-read a grid's output folder (its grid.json: variants, seeds and metrics of the last run),
    rewrite results.csv / summary.csv / summary.md and return the tables, without running anything."""
    out_dir = Path(out_dir).resolve()
    record = _read_json(out_dir / "grid.json")
    if not isinstance(record, dict) or "identity" not in record:
        raise Sim2RealError("no grid.json: not the output folder of a grid (run_grid / `sim2real ablate`)", out_dir)
    ident = record["identity"]
    grid = Grid(
        name=ident["name"],
        source=Path(record.get("source", "")),
        text="",
        description=record.get("description", ""),
        setup=ident["setup"],
        notebooks=ident["notebooks"],
        base=ident["base"],
        seeds=record["seeds"],
        metrics=record.get("metrics"),
        variants=ident["variants"],
    )
    return _summarize(grid, out_dir)


def _summarize(grid: Grid, out_dir: Path) -> GridReport:
    """Read every variant-seed's done.json of `grid` in `out_dir`; write results.csv, summary.csv,
    summary.md; return the tables (failed / unfinished runs appear in results with their status)."""
    results = []
    for variant in grid.variants:
        for seed in grid.seeds:
            run_dir = out_dir / variant / f"seed{seed}"
            done = _read_json(run_dir / "done.json")
            row: dict[str, Any] = {"variant": variant, "seed": seed, "run_dir": f"{variant}/seed{seed}"}
            if done:
                row.update(status="ok", duration_s=round(done.get("duration_s") or 0.0, 2))
                row.update(flatten_metrics(done.get("metrics") or {}))
            else:
                failed = (
                    any(e.get("status") == "failed" for e in _index_entries(run_dir)) if run_dir.is_dir() else False
                )
                row.update(status="failed" if failed else "not run", duration_s=None)
            results.append(row)
    ok_rows = [r for r in results if r["status"] == "ok"]
    if grid.metrics is not None:
        metric_keys = list(grid.metrics)
    else:
        metric_keys = sorted({k for r in ok_rows for k, v in r.items() if _is_number(v)} - {"seed", "duration_s"})
    missing = [k for k in metric_keys if not any(k in r for r in ok_rows)] if ok_rows else []
    if missing:
        warnings.warn(f"grid {grid.name}: metrics {missing} found in no finished run", stacklevel=2)
    summary = []
    for variant in grid.variants:
        rows = [r for r in ok_rows if r["variant"] == variant]
        line: dict[str, Any] = {"variant": variant, "n": len(rows)}
        for key in metric_keys:
            values = [float(r[key]) for r in rows if _is_number(r.get(key))]
            line[f"{key}.mean"] = statistics.fmean(values) if values else None
            line[f"{key}.std"] = statistics.stdev(values) if len(values) >= 2 else None
        summary.append(line)

    fixed = ["variant", "seed", "status", "duration_s", "run_dir"]
    metric_cols = sorted({k for r in results for k in r} - set(fixed))
    _write_csv(out_dir / "results.csv", results, fixed + metric_cols)
    summary_cols = ["variant", "n"] + [f"{k}.{s}" for k in metric_keys for s in ("mean", "std")]
    _write_csv(out_dir / "summary.csv", summary, summary_cols)

    md = [f"# Ablation grid `{grid.name}`", ""]
    if grid.description:
        md += [grid.description.strip(), ""]
    md += [
        f"Seeds {grid.seeds}; each cell is mean ± std (sample std) over the n seeds that finished. "
        f"Notebooks: {', '.join(grid.notebooks)}.",
        "",
        "| variant | n | " + " | ".join(metric_keys) + " |",
        "|---|---:|" + "---:|" * len(metric_keys),
    ]
    for line in summary:
        cells = []
        for key in metric_keys:
            mean, std = line[f"{key}.mean"], line[f"{key}.std"]
            cells.append("" if mean is None else _fmt_value(mean) + ("" if std is None else f" ± {std:.2g}"))
        md.append(f"| {line['variant']} | {line['n']} | " + " | ".join(cells) + " |")
    not_ok = [f"{r['variant']}/seed{r['seed']} ({r['status']})" for r in results if r["status"] != "ok"]
    if not_ok:
        md += ["", f"Not included: {', '.join(not_ok)}."]
    if missing:
        md += ["", f"Requested metrics found in no run: {', '.join(missing)}."]
    atomic_write_text(out_dir / "summary.md", "\n".join(md) + "\n")
    return GridReport(grid.name, out_dir, results, summary, metric_keys, missing_metrics=missing)


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else _csv_value(row.get(k))) for k in columns})
    atomic_write_text(path, buf.getvalue())


def _csv_value(value: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    return value


def run_grid(
    grid_file: str | Path,
    out_dir: str | Path,
    jobs: int = 1,
    quick: bool | None = None,
    seeds: list[int] | None = None,
    notebooks: str | Path | list[str | Path] | None = None,
    progress: bool = True,
    preset: str | None = None,
    timeout_s: float | None = None,
    kernel_name: str = "python3",
    base_run: str | Path | None = None,
) -> GridReport:
    """Run every variant × seed of a grid file (format: module docstring) into `out_dir`.

    jobs: variant-seeds run in parallel (worker processes, each its own run folder).
    quick / seeds / preset: override the grid's `base.quick` / `seeds` / `base.preset`.
    notebooks: a folder where the grid's notebook names are looked up (default: repo notebooks/),
        or an explicit list of notebook paths replacing the grid's `notebooks`.
    timeout_s: per notebook wall clock (see run_notebooks).
    base_run: an existing run folder (e.g. the demo's) whose config.yaml/provenance.json are copied
        and data/ linked into every variant-seed instead of running the grid's `setup` notebooks.
    Everything is checked before anything runs: grid keys, notebook parameters, every variant's
    config overrides (`load_config`), the output folder's grid. Finished variant-seeds (done.json)
    are skipped. Writes results.csv, summary.csv, summary.md; returns the GridReport; raises
    GridFailure (with `.report`) after summarising when some variant-seed failed.
    """
    if not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be an integer >= 1, got {jobs!r}")
    grid = load_grid(grid_file, quick=quick, seeds=seeds, preset=preset)
    out_dir = Path(out_dir).resolve()

    # 1. resolve notebooks and check every parameter / override before running anything
    if isinstance(notebooks, (list, tuple)):
        main_paths = _resolve_notebooks(notebooks, source=str(grid.source))
        grid.notebooks = [p.stem for p in main_paths]
        lookup = main_paths[0].parent
    else:
        lookup = Path(notebooks).resolve() if notebooks else NOTEBOOK_DIR
        main_paths = _resolve_notebooks(grid.notebooks, lookup, source=f"{grid.source}: notebooks")
    setup_paths = _resolve_notebooks(grid.setup, lookup, source=f"{grid.source}: setup") if grid.setup else []
    all_paths = setup_paths + [p for p in main_paths if p not in setup_paths]
    _plan_parameters(all_paths, grid.base, {}, source=f"{grid.source}: base")
    for vname, variant in grid.variants.items():
        _plan_parameters(main_paths, variant["parameters"], {}, source=f"{grid.source}: variants.{vname}.parameters")
        _validate_config(grid.variant_parameters(vname, grid.seeds[0]), f"{grid.source}: variants.{vname}")
    if base_run is not None:
        base_run = Path(base_run).resolve()
        if not base_run.is_dir():
            raise Sim2RealError("base_run folder does not exist", base_run)
    _claim_out_dir(grid, out_dir)
    if progress:
        n_runs = len(grid.variants) * len(grid.seeds)
        print(f"grid {grid.name}: {len(grid.variants)} variants × {len(grid.seeds)} seeds = {n_runs} runs -> {out_dir}")

    # 2. setup notebooks, once
    shared_run = base_run
    if shared_run is None and setup_paths:
        shared_run = out_dir / SETUP_DIR
        if not (shared_run / "done.json").is_file():
            setup_params = _declared_only(grid.base | {"seed": 0}, setup_paths)
            run_notebooks(
                shared_run,
                setup_paths,
                setup_params,
                timeout_s=timeout_s,
                kernel_name=kernel_name,
                progress=progress,
                _label="setup ",
            )
            atomic_write_json(shared_run / "done.json", {"grid": grid.name, "grid_hash": grid.hash()})

    # 3. variant-seeds not yet done
    todo, skipped = [], []
    for vname in grid.variants:
        for seed in grid.seeds:
            label = f"{vname}/seed{seed}"
            run_dir = out_dir / vname / f"seed{seed}"
            if (run_dir / "done.json").is_file():
                skipped.append(label)
                continue
            todo.append(
                {
                    "label": label,
                    "variant": vname,
                    "seed": seed,
                    "run_dir": str(run_dir),
                    "notebooks": [str(p) for p in main_paths],
                    "parameters": _declared_only(grid.variant_parameters(vname, seed), main_paths),
                    "timeout_s": timeout_s,
                    "kernel_name": kernel_name,
                    "progress": progress,
                    "shared_run": str(shared_run) if shared_run else None,
                    "grid": grid.name,
                    "grid_hash": grid.hash(),
                }
            )
    if progress and skipped:
        print(f"grid {grid.name}: skipping {len(skipped)} finished run(s)")
    outcomes = _run_jobs(todo, jobs)

    # 4. tables
    report = _summarize(grid, out_dir)
    report.ran = [o["label"] for o in outcomes if o["status"] == "ok"]
    report.skipped = skipped
    report.failed = {o["label"]: o["error"] for o in outcomes if o["status"] != "ok"}
    if progress:
        counts = f"{len(report.ran)} ran, {len(skipped)} skipped, {len(report.failed)} failed"
        print(f"grid {grid.name}: {counts}; summary: {out_dir / 'summary.md'}")
    if report.failed:
        lines = "\n".join(f"- {label}: {msg}" for label, msg in report.failed.items())
        raise GridFailure(
            f"{len(report.failed)} of {len(todo)} run(s) of grid {grid.name} failed (the others are in "
            f"{out_dir / 'summary.md'}):\n{lines}",
            report,
        )
    return report


# ============================================================================ hygiene
def _python_source(source: str) -> str:
    """Cell source with IPython syntax (%magic, !shell) turned into Python, for `ast`."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:
        return "\n".join("pass" if s.lstrip().startswith(("%", "!")) else s for s in source.splitlines())


def check_notebook(path: str | Path) -> list[str]:
    """Hygiene problems of a committed notebook (empty list = clean): outputs or execution counts
    committed, not exactly one `parameters` cell, `def`/`class` in a code cell, common parameters
    (run_dir, preset, quick, seed, overrides) missing, or a parameters statement that is not
    `name = <literal>`."""
    import nbformat

    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:
        return [f"{path.name}: not a readable notebook ({type(e).__name__}: {e})"]
    problems = []
    param_cells = []
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.metadata.get("tags", []):
            param_cells.append(i)
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"{path.name}: cell {i}: outputs committed (strip them)")
        if cell.get("execution_count") is not None:
            problems.append(f"{path.name}: cell {i}: execution_count committed (strip outputs)")
        try:
            tree = ast.parse(_python_source(cell.source))
        except SyntaxError as e:
            problems.append(f"{path.name}: cell {i}: syntax error: {e.msg} (line {e.lineno})")
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                kind = "class" if isinstance(node, ast.ClassDef) else "def"
                problems.append(f"{path.name}: cell {i}: `{kind} {node.name}` — move it into the library")
    if len(param_cells) != 1:
        where = f" (cells {param_cells})" if param_cells else ""
        problems.append(f"{path.name}: {len(param_cells)} cells tagged 'parameters'{where}, expected exactly one")
    if param_cells:
        idx = param_cells[0]
        cell = nb.cells[idx]
        names = set()
        try:
            tree = ast.parse(cell.source)
        except SyntaxError as e:
            problems.append(f"{path.name}: parameters cell {idx}: syntax error: {e.msg}")
            tree = ast.Module(body=[], type_ignores=[])
        for stmt in tree.body:
            target, value = None, None
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                target, value = stmt.targets[0].id, stmt.value
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
                target, value = stmt.target.id, stmt.value
            text = ast.get_source_segment(cell.source, stmt) or ast.dump(stmt)
            if target is None:
                problems.append(f"{path.name}: parameters cell {idx}: `{_first_line(text)}` is not `name = <literal>`")
                continue
            try:
                ast.literal_eval(value)
            except (ValueError, SyntaxError, TypeError):
                problems.append(
                    f"{path.name}: parameters cell {idx}: `{_first_line(text)}` is not a literal "
                    "(compute derived values in the next cell)"
                )
            names.add(target)
        missing = [n for n in COMMON_PARAMETERS if n not in names]
        if missing:
            problems.append(f"{path.name}: parameters cell {idx} lacks common parameter(s): {', '.join(missing)}")
    return problems


def check_notebooks(paths: list[str | Path] | None = None) -> dict[str, list[str]]:
    """`check_notebook` over a list (default: the repo's NN_*.ipynb); only notebooks with problems."""
    out = {}
    for p in paths if paths is not None else default_notebooks():
        problems = check_notebook(p)
        if problems:
            out[str(p)] = problems
    return out


if __name__ == "__main__":
    from sim2real_kit.runner import _job_main as _main  # the module's own classes, not __main__'s

    sys.exit(_main(sys.argv[1:]))


def ablation_axis(grid_file: str | Path, summary: list[dict], key: str) -> list[dict]:
    """Summary rows of the variants that set config `key` (e.g. "disc.threshold", "pipeline.stages"),
    each with `key` added as a number, sorted by it: the x axis of "metric vs threshold" plots.
    Variants that do not set `key` take the config default when they set nothing at all."""
    from sim2real_kit.config import load_config

    grid = load_grid(grid_file)
    section, name = key.split(".", 1)
    default = getattr(getattr(load_config(grid.base.get("preset", "tiny")), section), name)
    rows = []
    for row in summary:
        overrides = grid.variants.get(row["variant"], {}).get("overrides", [])
        values = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == key]
        if values:
            value = yaml.safe_load(values[-1])
        elif not overrides:
            value = default
        else:
            continue
        rows.append({**row, key: value})
    return sorted(rows, key=lambda r: r[key])
