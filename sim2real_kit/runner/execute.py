"""Running notebooks headless with papermill: :func:`run_notebooks` executes a sequence into a run
folder (`run_dir/notebooks/NN_name.ipynb`, `run.json`), :class:`NotebookFailure` says which cell of
which notebook failed and how, :class:`RunReport` / :class:`NotebookResult` hold what happened."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from sim2real_kit.errors import ConfigError, Sim2RealError
from sim2real_kit.io import atomic_write_json
from sim2real_kit.runner.index import write_index
from sim2real_kit.runner.notebooks import (
    NOTEBOOK_DIR,
    _first_line,
    _fmt_clock,
    _fmt_duration,
    _literal,
    _plan_parameters,
    _read_json,
    _resolve_notebooks,
    _validate_config,
    default_notebooks,
    expected_seconds,
    notebook_parameters,
    notebook_timeout,
    short_name,
)

# the kernel warns on stderr about unencrypted local TCP at every start; keep the console readable
_KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL"]
# Environment of the notebooks' kernels (a value already set in the environment wins). open3d, when
# imported in a Jupyter kernel, prints "Jupyter environment detected. Enabling Open3D WebVisualizer." and two
# "[Open3D INFO] WebRTC ..." lines into the cell's output (open3d/__init__.py, at import: too early for
# `set_verbosity_level`); the kit draws its 3D views with plotly and never uses that visualizer.
# `make lab` exports the same variables for JupyterLab's kernels.
# GLIBC_TUNABLES: glibc's malloc keeps freed blocks below 32 MB in its heap and returns heap memory to the
# system only past 1 GB free, instead of mapping and unmapping (zero-filling) torch's tensors over and over.
# Stage-I of the tiny demo, one thread, same process start: 108 s -> 96.5 s (sys 9 s -> 0.9 s), weights
# bit-identical (issue 21). Read by the C library at process start, so set for the kernels (and what they spawn).
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"
KERNEL_ENV = {"OPEN3D_DISABLE_WEB_VISUALIZER": "true", "GLIBC_TUNABLES": MALLOC_TUNABLES}
# A kernel whose notebook has finished is killed (its process group: SIGKILL), not asked to exit: the exit of a
# kernel that imported torch and diffusers (interpreter teardown, exit handlers) took 1.2-2.5 s, waited for at the
# end of every notebook. Its work is done by then: outputs received, files written and closed.
KERNEL_SHUTDOWN = "immediate"  # nbclient's `shutdown_kernel` ("graceful": ask, wait up to 5 s)


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


# ============================================================================ one notebook
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


def _executed_cell_index(cell, source_nb, executed: Path, injected_index: int | None) -> int | None:
    """Index in the parameterised notebook of `cell` (the one nbclient was running): looked up by id
    in the executed copy, else (not saved yet) by its source in the source notebook."""
    import nbformat

    if cell is None:
        return None
    executed_idx = None
    if executed.is_file():
        with contextlib.suppress(Exception):
            ex_nb = nbformat.read(executed, as_version=4)
            executed_idx = next(i for i, c in enumerate(ex_nb.cells) if c.get("id") == cell.get("id"))
    if executed_idx is None:
        executed_idx = next((i for i, c in enumerate(source_nb.cells) if c.source == cell.source), None)
        if executed_idx is not None and injected_index is not None and executed_idx >= injected_index:
            executed_idx += 1
    return executed_idx


def _failure_from_exception(
    err: Exception,
    path: Path,
    executed: Path,
    cell,
    executed_idx: int | None,
    injected_index: int | None,
    elapsed: float,
    timeout_s: float | None,
    cell_timeout_s: float | None,
) -> NotebookFailure:
    """CellTimeoutError, DeadKernelError, a kernel that does not start ... -> NotebookFailure."""
    src_idx = executed_idx
    if executed_idx is not None and injected_index is not None and executed_idx > injected_index:
        src_idx = executed_idx - 1
    evalue = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if type(err).__name__ == "CellTimeoutError":
        evalue = f"{evalue} (after {_fmt_duration(elapsed)}; timeout_s={timeout_s}, cell_timeout_s={cell_timeout_s})"
    return NotebookFailure(
        path.stem,
        cell_index=src_idx,
        executed_cell_index=executed_idx,
        first_line=_first_line(cell.source) if cell is not None else "",
        ename=type(err).__name__,
        evalue=evalue,
        executed_path=executed,
    )


@contextlib.contextmanager
def _kernel_environment(env: dict[str, str] = KERNEL_ENV):
    """Set `env` (where not already set) in os.environ while a kernel starts: it inherits this process's
    environment. Restored afterwards."""
    added = [k for k in env if k not in os.environ]
    os.environ.update({k: env[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


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
    from sim2real_kit.runner._engine import ENGINE_NAME

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
        with _quiet_papermill(), _kernel_environment():
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
                engine_name=ENGINE_NAME,  # the executed copy written on the autosave clock, not at every cell
                shutdown_kernel=KERNEL_SHUTDOWN,
            )
    except PapermillExecutionError as err:
        raise _failure_from_papermill(err, path.stem, executed, injected_index) from None
    except Exception as err:  # CellTimeoutError, DeadKernelError, kernel start failures
        cell = current.get("cell")
        executed_idx = _executed_cell_index(cell, source_nb, executed, injected_index)
        elapsed = time.monotonic() - start
        raise _failure_from_exception(
            err, path, executed, cell, executed_idx, injected_index, elapsed, timeout_s, cell_timeout_s
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


# ============================================================================ a sequence
def _prepare_run(run_dir: Path, paths: list[Path], plan: dict, declared: dict) -> list[NotebookResult]:
    """Remove the executed copies, metrics.json and html of the notebooks in the sequence (nothing
    stale survives a failed re-run) and list them as "not run" with what each will receive."""
    nb_dir = run_dir / "notebooks"
    nb_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for p in paths:
        for suffix in (".ipynb", ".metrics.json", ".html"):
            with contextlib.suppress(FileNotFoundError):
                (nb_dir / f"{p.stem}{suffix}").unlink()
        injected = ({"run_dir": str(run_dir)} if "run_dir" in declared[p.stem] else {}) | plan[p.stem]
        results.append(NotebookResult(p.stem, p, nb_dir / f"{p.stem}.ipynb", parameters=injected))
    return results


def _run_one(
    r: NotebookResult,
    report: RunReport,
    head: str,
    *,
    timeout_s: float | None,
    cell_timeout_s: float | None,
    kernel_name: str,
    progress: bool,
    labelled: bool,
    expected: tuple[float, float] | None = None,
) -> None:
    """Execute one notebook of `report` and record its status, duration and metrics in it and in
    run.json; prints the tail of its progress line ("done in 0:41", "FAILED after 0:12"; "slower than
    expected" past `expected`'s high end); re-raises a failure (NotebookFailure gets `.report`)."""
    results = report.notebooks
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
        _write_run_json(report.run_dir, results)
        if progress:
            tail = f"FAILED after {_fmt_clock(r.duration_s)}"
            print(tail if not labelled else f"{head} {tail}", flush=True)
        if isinstance(err, NotebookFailure):
            err.report = report
        raise
    r.duration_s = time.monotonic() - start
    r.status = "ok"
    metrics_path = r.executed.parent / f"{r.name}.metrics.json"
    r.metrics = _read_json(metrics_path) if metrics_path.is_file() else None
    _write_run_json(report.run_dir, results)
    if progress:
        notes = [] if r.metrics is not None else ["no metrics.json"]
        if expected is not None and r.duration_s > expected[1]:
            notes.append("slower than expected")
        tail = f"done in {_fmt_clock(r.duration_s)}" + (f" ({', '.join(notes)})" if notes else "")
        print(tail if not labelled else f"{head} {tail}", flush=True)


def _expected_for(r: NotebookResult) -> tuple[float, float] | None:
    """The expected time range of a notebook with the parameters it was given (its preset, quick)."""
    declared = notebook_parameters(r.source)
    preset = r.parameters.get("preset", _default_literal(declared.get("preset"), "tiny"))
    quick = r.parameters.get("quick", _default_literal(declared.get("quick"), False))
    return expected_seconds(r.name, preset, bool(quick))


def _default_literal(source: str | None, fallback):
    """A parameters-cell default (its source text) as a value; `fallback` when absent or not a literal."""
    if source is None:
        return fallback
    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError):
        return fallback


def _fmt_expected(expected: tuple[float, float] | None) -> str:
    return "" if expected is None else f" (expected {_fmt_clock(expected[0])}-{_fmt_clock(expected[1])})"


def run_notebooks(
    run_dir: str | Path,
    notebooks: list[str | Path] | None = None,
    parameters: dict | None = None,
    per_notebook: dict[str, dict] | None = None,
    timeout_s: float | str | None = None,
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
    timeout_s: wall clock per notebook (seconds, kernel start included; each cell gets the time left), None for
        no limit, or "auto": 4x the notebook's expected high end, no limit where none is known (`notebook_timeout`).
    cell_timeout_s: limit per cell (seconds). index: write run_dir/index.html at the end (also on failure).
    Prints `[2/6] 02_stage1 (expected 2:30-7:30) … done in 4:12` per notebook (the range from
    `EXPECTED_SECONDS` of the notebook's preset; none for quick runs); stops at the first failure by raising
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

    results = _prepare_run(run_dir, paths, plan, declared)
    report = RunReport(run_dir, results)
    _write_run_json(run_dir, results)
    try:
        for i, r in enumerate(results, start=1):
            expected = _expected_for(r)
            head = f"{_label}[{i}/{len(results)}] {r.name}{_fmt_expected(expected)} …"
            if progress and not _label:
                print(head, end=" ", flush=True)
            _run_one(
                r,
                report,
                head,
                timeout_s=notebook_timeout(timeout_s, expected),
                cell_timeout_s=cell_timeout_s,
                kernel_name=kernel_name,
                progress=progress,
                labelled=bool(_label),
                expected=expected,
            )
    finally:
        if index:
            write_index(run_dir)
    return report
