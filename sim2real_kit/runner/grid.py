"""Ablation grids: :func:`load_grid` reads and checks a grid file, :func:`run_grid` runs every
variant × seed into an output folder (setup notebooks once, finished variant-seeds skipped, worker
processes for `jobs > 1`), :func:`summarize_grid` re-reads a finished folder and
:func:`ablation_axis` turns a summary into the x axis of a "metric vs knob" plot.

The grid file format and the output folder are described in the package docstring
(``sim2real_kit/runner/__init__.py``)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from sim2real_kit.errors import ConfigError, Sim2RealError
from sim2real_kit.io import atomic_write_json, atomic_write_text
from sim2real_kit.runner.execute import run_notebooks
from sim2real_kit.runner.jobs import _run_jobs
from sim2real_kit.runner.notebooks import (
    NOTEBOOK_DIR,
    _declared_only,
    _plan_parameters,
    _read_json,
    _resolve_notebooks,
    _validate_config,
)
from sim2real_kit.runner.summary import GridReport, _summarize

GRID_KEYS = ("name", "description", "setup", "notebooks", "base", "seeds", "metrics", "variants")
VARIANT_KEYS = ("overrides", "parameters")
SETUP_DIR = "_setup"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class GridFailure(Sim2RealError):
    """Some variant-seeds of a grid failed; the others ran and were summarised (`.report`)."""

    def __init__(self, message: str, report: GridReport):
        self.report = report
        super().__init__(message)


@dataclass
class Grid:
    """A parsed grid file (see the package docstring)."""

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


# ============================================================================ the grid file
def _str_list(value, key: str, source: Path) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key} must be a list of strings, got {value!r}", source)
    return list(value)


def _read_grid_file(source: Path) -> tuple[str, dict]:
    """The file's text and top-level mapping; ConfigError for a missing file, bad YAML, unknown or
    missing top-level keys."""
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
    return text, d


def _grid_base(base, source: Path, quick: bool | None, preset: str | None) -> dict:
    """`base` checked (no seed / run_dir, overrides a list of strings) with `quick` / `preset` applied."""
    base = base or {}
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
    return base


def _grid_seeds(seed_list, source: Path) -> list[int]:
    if (
        not isinstance(seed_list, list)
        or not seed_list
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seed_list)
        or len(set(seed_list)) != len(seed_list)
    ):
        raise ConfigError(f"seeds must be a non-empty list of distinct integers, got {seed_list!r}", source)
    return seed_list


def _grid_variant(vname: str, v, source: Path) -> dict:
    """One entry of `variants`, checked: {"overrides": [...], "parameters": {...}}."""
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
    return {
        "overrides": _str_list(v.get("overrides"), f"variants.{vname}.overrides", source),
        "parameters": dict(params),
    }


def load_grid(
    grid_file: str | Path, quick: bool | None = None, seeds: list[int] | None = None, preset: str | None = None
) -> Grid:
    """Parse and check a grid YAML (see the package docstring); `quick` / `seeds` / `preset` override
    the file's `base.quick` / `seeds` / `base.preset`."""
    source = Path(grid_file).resolve()
    text, d = _read_grid_file(source)
    name = d["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"name must be a simple string (letters, digits, _.-), got {name!r}", source)
    notebooks = _str_list(d["notebooks"], "notebooks", source)
    if not notebooks:
        raise ConfigError("notebooks must list at least one notebook", source)
    setup = _str_list(d.get("setup"), "setup", source)
    base = _grid_base(d.get("base"), source, quick, preset)
    seed_list = _grid_seeds(d.get("seeds", [0]) if seeds is None else list(seeds), source)
    metrics = d.get("metrics")
    metrics = None if metrics is None else _str_list(metrics, "metrics", source)
    raw_variants = d["variants"]
    if not isinstance(raw_variants, dict) or not raw_variants:
        raise ConfigError("variants must be a non-empty mapping name -> {overrides, parameters}", source)
    variants = {str(vname): _grid_variant(str(vname), v, source) for vname, v in raw_variants.items()}
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


# ============================================================================ running a grid
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


def _grid_notebooks(grid: Grid, notebooks) -> tuple[list[Path], list[Path]]:
    """(main, setup) notebook paths: the grid's names looked up in `notebooks` (a folder, default
    the repo's notebooks/), or `notebooks` as an explicit list replacing the grid's `notebooks`."""
    if isinstance(notebooks, (list, tuple)):
        main_paths = _resolve_notebooks(notebooks, source=str(grid.source))
        grid.notebooks = [p.stem for p in main_paths]
        lookup = main_paths[0].parent
    else:
        lookup = Path(notebooks).resolve() if notebooks else NOTEBOOK_DIR
        main_paths = _resolve_notebooks(grid.notebooks, lookup, source=f"{grid.source}: notebooks")
    setup_paths = _resolve_notebooks(grid.setup, lookup, source=f"{grid.source}: setup") if grid.setup else []
    return main_paths, setup_paths


def _check_grid(grid: Grid, main_paths: list[Path], setup_paths: list[Path]) -> None:
    """Every parameter declared by some notebook, every variant's config overrides valid."""
    all_paths = setup_paths + [p for p in main_paths if p not in setup_paths]
    _plan_parameters(all_paths, grid.base, {}, source=f"{grid.source}: base")
    for vname, variant in grid.variants.items():
        _plan_parameters(main_paths, variant["parameters"], {}, source=f"{grid.source}: variants.{vname}.parameters")
        _validate_config(grid.variant_parameters(vname, grid.seeds[0]), f"{grid.source}: variants.{vname}")


def _run_setup(grid: Grid, out_dir: Path, setup_paths: list[Path], **run_args) -> Path | None:
    """Run the setup notebooks once (seed 0) into out_dir/_setup unless already done; its folder."""
    if not setup_paths:
        return None
    shared_run = out_dir / SETUP_DIR
    if not (shared_run / "done.json").is_file():
        setup_params = _declared_only(grid.base | {"seed": 0}, setup_paths)
        run_notebooks(shared_run, setup_paths, setup_params, _label="setup ", **run_args)
        atomic_write_json(shared_run / "done.json", {"grid": grid.name, "grid_hash": grid.hash()})
    return shared_run


def _grid_jobs(
    grid: Grid, out_dir: Path, main_paths: list[Path], shared_run: Path | None, **run_args
) -> tuple[list[dict], list[str]]:
    """(jobs of the variant-seeds without a done.json, labels of those with one)."""
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
                    "timeout_s": run_args["timeout_s"],
                    "kernel_name": run_args["kernel_name"],
                    "progress": run_args["progress"],
                    "shared_run": str(shared_run) if shared_run else None,
                    "grid": grid.name,
                    "grid_hash": grid.hash(),
                }
            )
    return todo, skipped


def _finish(grid: Grid, out_dir: Path, outcomes: list[dict], skipped: list[str], n_todo: int, progress: bool):
    """Summarise the folder, record what ran / was skipped / failed; GridFailure if any failed."""
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
            f"{len(report.failed)} of {n_todo} run(s) of grid {grid.name} failed (the others are in "
            f"{out_dir / 'summary.md'}):\n{lines}",
            report,
        )
    return report


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
    """Run every variant × seed of a grid file (format: package docstring) into `out_dir`.

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
    main_paths, setup_paths = _grid_notebooks(grid, notebooks)
    _check_grid(grid, main_paths, setup_paths)
    if base_run is not None:
        base_run = Path(base_run).resolve()
        if not base_run.is_dir():
            raise Sim2RealError("base_run folder does not exist", base_run)
    _claim_out_dir(grid, out_dir)
    if progress:
        n_runs = len(grid.variants) * len(grid.seeds)
        print(f"grid {grid.name}: {len(grid.variants)} variants × {len(grid.seeds)} seeds = {n_runs} runs -> {out_dir}")

    # 2. setup notebooks, once; 3. variant-seeds not yet done; 4. tables
    run_args = {"timeout_s": timeout_s, "kernel_name": kernel_name, "progress": progress}
    shared_run = base_run if base_run is not None else _run_setup(grid, out_dir, setup_paths, **run_args)
    todo, skipped = _grid_jobs(grid, out_dir, main_paths, shared_run, **run_args)
    if progress and skipped:
        print(f"grid {grid.name}: skipping {len(skipped)} finished run(s)")
    outcomes = _run_jobs(todo, jobs)
    return _finish(grid, out_dir, outcomes, skipped, len(todo), progress)


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
