"""The tables of an ablation grid's output folder: one row per variant-seed (results.csv) and one
row per variant with mean ± std over the finished seeds (summary.csv, summary.md), read from each
variant-seed's done.json; :class:`GridReport` holds them."""

from __future__ import annotations

import statistics
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim2real_kit.io import atomic_write_text
from sim2real_kit.report import format_value, markdown_table, write_csv
from sim2real_kit.runner.index import _index_entries, _is_number, flatten_metrics
from sim2real_kit.runner.notebooks import _read_json

if TYPE_CHECKING:
    from sim2real_kit.runner.grid import Grid

RESULT_COLUMNS = ["variant", "seed", "status", "duration_s", "run_dir"]  # then every metric, sorted


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


def _results_rows(grid: Grid, out_dir: Path) -> list[dict]:
    """One row per variant-seed: its done.json's duration and flattened metrics, or its status
    ("failed" when a notebook of its run failed, else "not run")."""
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
    return results


def _summary_rows(grid: Grid, ok_rows: list[dict], metric_keys: list[str]) -> list[dict]:
    """One row per variant: n finished seeds, `<key>.mean` and `<key>.std` (sample std; None for
    fewer than 1 / 2 numbers)."""
    summary = []
    for variant in grid.variants:
        rows = [r for r in ok_rows if r["variant"] == variant]
        line: dict[str, Any] = {"variant": variant, "n": len(rows)}
        for key in metric_keys:
            values = [float(r[key]) for r in rows if _is_number(r.get(key))]
            line[f"{key}.mean"] = statistics.fmean(values) if values else None
            line[f"{key}.std"] = statistics.stdev(values) if len(values) >= 2 else None
        summary.append(line)
    return summary


def _mean_std(mean: float | None, std: float | None) -> str | None:
    """A summary.md cell: "3.5 ± 0.71" (mean 4 significant digits, std 2), "3.5" for one seed."""
    if mean is None:
        return None
    return format_value(mean) + ("" if std is None else f" ± {std:.2g}")


def _summary_markdown(grid: Grid, results: list[dict], summary: list[dict], keys: list[str], missing) -> str:
    """summary.md: title, description, seeds and notebooks, the variant table, what is left out."""
    md = [f"# Ablation grid `{grid.name}`", ""]
    if grid.description:
        md += [grid.description.strip(), ""]
    md += [
        f"Seeds {grid.seeds}; each cell is mean ± std (sample std) over the n seeds that finished. "
        f"Notebooks: {', '.join(grid.notebooks)}.",
        "",
    ]
    cells = [
        {"variant": line["variant"], "n": line["n"]} | {k: _mean_std(line[f"{k}.mean"], line[f"{k}.std"]) for k in keys}
        for line in summary
    ]
    align = {"n": "right"} | {k: "right" for k in keys}
    md += markdown_table(cells, ["variant", "n", *keys], align=align).splitlines()
    not_ok = [f"{r['variant']}/seed{r['seed']} ({r['status']})" for r in results if r["status"] != "ok"]
    if not_ok:
        md += ["", f"Not included: {', '.join(not_ok)}."]
    if missing:
        md += ["", f"Requested metrics found in no run: {', '.join(missing)}."]
    return "\n".join(md) + "\n"


def _summarize(grid: Grid, out_dir: Path) -> GridReport:
    """Read every variant-seed's done.json of `grid` in `out_dir`; write results.csv, summary.csv,
    summary.md; return the tables (failed / unfinished runs appear in results with their status)."""
    results = _results_rows(grid, out_dir)
    ok_rows = [r for r in results if r["status"] == "ok"]
    if grid.metrics is not None:
        metric_keys = list(grid.metrics)
    else:
        metric_keys = sorted({k for r in ok_rows for k, v in r.items() if _is_number(v)} - {"seed", "duration_s"})
    missing = [k for k in metric_keys if not any(k in r for r in ok_rows)] if ok_rows else []
    if missing:
        warnings.warn(f"grid {grid.name}: metrics {missing} found in no finished run", stacklevel=2)
    summary = _summary_rows(grid, ok_rows, metric_keys)

    # NaN is written as "nan", None as an empty cell: the files these tables always were
    metric_cols = sorted({k for r in results for k in r} - set(RESULT_COLUMNS))
    write_csv(out_dir / "results.csv", results, RESULT_COLUMNS + metric_cols)
    summary_cols = ["variant", "n"] + [f"{k}.{s}" for k in metric_keys for s in ("mean", "std")]
    write_csv(out_dir / "summary.csv", summary, summary_cols)
    atomic_write_text(out_dir / "summary.md", _summary_markdown(grid, results, summary, metric_keys, missing))
    return GridReport(grid.name, out_dir, results, summary, metric_keys, missing_metrics=missing)
