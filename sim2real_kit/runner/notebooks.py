"""The notebooks the runner executes: where they are, their names, the parameters each declares,
and the checks of the parameters a run or a grid gives them (before anything runs); plus the small
helpers every part of the runner shares (first line of a cell, durations, tolerant JSON reads)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

from sim2real_kit.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
COMMON_PARAMETERS = ("run_dir", "preset", "quick", "seed", "overrides")

# Expected wall time of each notebook (seconds, low-high, kernel start included) per preset, measured with
# `make demo` on this project's 2-core CPU machine (spread: the machine is shared). The one place these
# ranges live: the runner's progress line shows them ("[3/6] 03_discriminator (expected 0:20-1:00) …").
# A preset or notebook not listed, or a `quick` run, has no range.
EXPECTED_SECONDS: dict[str, dict[str, tuple[float, float]]] = {
    "tiny": {
        # low end: 2026-12-07's CPU (AMD EPYC, Zen 5), quiet, at 642353d+ (issue 21's overhead cuts); high end:
        # about the same machine with another program on one core (fresh clone, 2026-12-07: 0:18 / 2:18 / 0:36 /
        # 4:06 / 5:17 / 0:53) and the slower CPUs of 2026-12-06 (02 up to 3:58, 04 5:53, 05 7:32 quiet before
        # the cuts); the "auto" timeout is 4x the high end
        "01_data": (15, 60),  # quiet 0:16, loaded 0:18
        "02_stage1": (80, 240),  # quiet 1:25, loaded 2:18
        "03_discriminator": (20, 60),  # quiet 0:23, loaded 0:36
        "04_stage2": (130, 420),  # quiet 2:14, loaded 4:06 (Stage-II and the control one after the other)
        "05_benchmark": (170, 480),  # quiet 2:59, loaded 5:17 (the benchmark and the real sample)
        "06_ablations": (30, 100),  # quiet 0:34, loaded 0:53 (the grid's two variants)
    },
}


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
    _check_declared(paths, declared, parameters, per_notebook or {}, source)
    plan = {}
    for p in paths:
        names = declared[p.stem]
        injected = {k: v for k, v in parameters.items() if k in names}
        injected.update((per_notebook or {}).get(p.stem, {}))
        plan[p.stem] = injected
    return plan, declared


def _check_declared(
    paths: list[Path], declared: dict[str, dict], parameters: dict, per_notebook: dict, source: str
) -> None:
    """ConfigError for `run_dir` passed in, a common parameter no notebook declares, or a
    per-notebook parameter (or notebook) that is not in the sequence."""

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
    for stem, extra in per_notebook.items():
        if stem not in declared:
            raise ConfigError(f"per_notebook: {stem!r} is not in the sequence ({', '.join(declared)})")
        bad = sorted(k for k in extra if k not in declared[stem])
        if bad:
            raise ConfigError(
                f"per_notebook[{stem!r}]: unknown parameter(s) {', '.join(bad)}; "
                f"{stem} declares: {', '.join(declared[stem]) or '(no parameters cell)'}",
                paths[[p.stem for p in paths].index(stem)],
            )


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


# ============================================================================ shared helpers
def _first_line(source: str) -> str:
    line = next((s.strip() for s in source.splitlines() if s.strip()), "")
    return line if len(line) <= 80 else line[:77] + "..."


def expected_seconds(name: str, preset: str | None = "tiny", quick: bool = False) -> tuple[float, float] | None:
    """(low, high) expected seconds of notebook `name` (stem) under `preset` (see `EXPECTED_SECONDS`);
    None when unknown (quick runs, other presets, other notebooks)."""
    if quick:
        return None
    return EXPECTED_SECONDS.get(str(preset or "tiny"), {}).get(name)


TIMEOUT_FACTOR = 4.0  # timeout "auto": this many times the notebook's expected high end


def notebook_timeout(timeout_s: float | str | None, expected: tuple[float, float] | None) -> float | None:
    """The wall clock (seconds) one notebook may run: a number as given (None: no limit); "auto":
    `TIMEOUT_FACTOR` x the high end of its expected range, so a hung kernel is stopped but a slow machine is
    not (04_stage2 once took 21 min beside another job, 2.9x its expected high end, and a flat 30 min stopped
    it under heavier load); no limit when the range is unknown (other presets: hours of GPU training are
    legitimate; quick runs)."""
    if timeout_s is None:
        return None
    if not isinstance(timeout_s, str):
        return float(timeout_s)
    word = timeout_s.strip().lower()
    if word == "auto":
        return None if expected is None else TIMEOUT_FACTOR * float(expected[1])
    if word in ("none", "0", "off"):
        return None
    try:
        return float(word)
    except ValueError:
        raise ConfigError(f"timeout {timeout_s!r}: give seconds, 'auto' or 'none'") from None


def _fmt_clock(seconds: float) -> str:
    """83 -> "1:23", 3725 -> "1:02:05" (the progress line's durations)."""
    total = int(round(max(seconds, 0.0)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


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
