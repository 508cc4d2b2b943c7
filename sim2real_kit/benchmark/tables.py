"""The benchmark's tables: mean ± std per simulator over seeds, the markdown table with the best value of
each column in bold, bar charts, CSV; and `BenchmarkResult`, what `evaluate_run` returns."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sim2real_kit.benchmark.simulators import REFERENCE
from sim2real_kit.io import atomic_path


def _finite(values) -> list[float]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            continue
        if math.isfinite(float(v)):
            out.append(float(v))
    return out


def compare_table(rows: Sequence[Mapping], metrics: Sequence[str], group_key: str = "simulator") -> list[dict]:
    """Mean ± std of `metrics` over the rows of each group (groups in order of first appearance).

    Returns one dict per group: {group_key, "n" (rows), "note" (distinct non-empty notes joined by "; "),
    and per metric m: m (mean of the finite values, NaN if none), f"{m}_std" (sample std, 0 for one
    value), f"{m}_n" (finite values counted)}."""
    groups: dict = {}
    for row in rows:
        groups.setdefault(row.get(group_key), []).append(row)
    table = []
    for key, members in groups.items():
        entry: dict = {group_key: key, "n": len(members)}
        notes = []
        for r in members:
            for part in str(r.get("note") or "").split("; "):
                if part and part not in notes:
                    notes.append(part)
        entry["note"] = "; ".join(notes)
        for m in metrics:
            vals = _finite(r.get(m) for r in members)
            entry[m] = float(np.mean(vals)) if vals else math.nan
            entry[f"{m}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
            entry[f"{m}_n"] = len(vals)
        table.append(entry)
    return table


@dataclass(frozen=True)
class Column:
    """One column of `markdown_table`: metric key, header label, which way is better ("lower",
    "higher" or None: no bold) and decimals."""

    key: str
    label: str
    better: str | None = None
    digits: int = 2


# The benchmark table: metric groups (depth | holes | 3D | discriminator | stability | downstream) as columns.
COLUMNS = (
    Column("abs_rel", "depth AbsRel ↓", "lower", 4),
    Column("rmse_mm", "depth RMSE mm ↓", "lower", 1),
    Column("delta1_pct", "depth δ1 % ↑", "higher", 1),
    Column("w1_mm", "residual W1 mm ↓", "lower", 2),
    Column("hole_all_pct", "holes %", None, 1),
    Column("hole_gap_pct", "hole gap pp ↓", "lower", 1),
    Column("hole_edge_gap_pct", "edge-hole gap pp ↓", "lower", 1),
    Column("edge_mae_mm", "edge residual mm", None, 1),
    Column("miou_pct", "3D mIoU % ↑", "higher", 1),
    Column("cd_l2_x1000", "3D CD-L2 ×1000 ↓", "lower", 3),
    Column("fscore_pct", "3D F % ↑", "higher", 1),
    Column("disc_fake_pct", "D judged fake % ↓", "lower", 1),
    Column("seed_spread_mm", "seed spread mm", None, 2),
    Column("view_mm", "view disagreement mm", None, 2),
    Column("view_gap_mm", "view gap mm ↓", "lower", 2),
)
DOWNSTREAM_COLUMNS = (
    Column("ds_cls_acc_pct", "down. cls acc % ↑", "higher", 1),
    Column("ds_rec_iou_pct", "down. rec IoU % ↑", "higher", 1),
    Column("ds_rec_cd_l2_x1000", "down. rec CD ↓", "lower", 2),
)
FIGURES = (
    ("w1_mm", "Residual W1 (mm, lower is better)"),
    ("hole_gap_pct", "Hole-rate gap to real (percentage points, lower is better)"),
    ("cd_l2_x1000", "CD-L2 ×1000 vs fused real (lower is better)"),
    ("fscore_pct", "F-score % vs fused real (higher is better)"),
    ("disc_fake_pct", "Patches judged fake by the Stage-I discriminator (%, lower is better)"),
)


def _best(table: Sequence[Mapping], column: Column, group_key: str, exclude: Sequence[str]) -> float | None:
    vals = [r.get(column.key) for r in table if r.get(group_key) not in exclude]
    vals = _finite(vals)
    if not vals or column.better is None:
        return None
    return min(vals) if column.better == "lower" else max(vals)


def _cell(entry: Mapping, column: Column, best: float | None) -> str:
    mean = entry.get(column.key)
    if mean is None or not isinstance(mean, (int, float)) or not math.isfinite(float(mean)):
        return "—"
    text = f"{mean:.{column.digits}f}"
    if entry.get(f"{column.key}_n", 1) > 1:
        text += f" ± {entry.get(f'{column.key}_std', 0.0):.{column.digits}f}"
    if best is not None and round(float(mean), column.digits) == round(best, column.digits):
        text = f"**{text}**"
    return text


def markdown_table(
    table: Sequence[Mapping],
    columns: Sequence[Column | tuple] = COLUMNS,
    group_key: str = "simulator",
    header: str | None = None,
    exclude_from_best: Sequence[str] = (REFERENCE,),
    labels: Mapping[str, str] | None = None,
    notes: bool = True,
) -> str:
    """Markdown table of `compare_table` output: one row per group, one column per `Column` (or
    (key, label[, better[, digits]]) tuple) as "mean ± std" (the ± part when a metric has more than
    one value), "—" for NaN, the best value of each column in bold (rows in `exclude_from_best`, the
    reference, do not compete), a seeds column and the notes. `header`: a line above the table."""
    cols = [c if isinstance(c, Column) else Column(*c) for c in columns]
    best = {c.key: _best(table, c, group_key, exclude_from_best) for c in cols}
    head = [group_key, "seeds", *[c.label for c in cols]] + (["note"] if notes else [])
    lines = [header, ""] if header else []
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for entry in table:
        name = str(entry.get(group_key))
        label = (labels or {}).get(name)
        seeds = max([entry.get(f"{c.key}_n", 0) for c in cols] + [0])
        cells = [f"{label} (`{name}`)" if label and label != name else name, str(seeds)]
        cells += [_cell(entry, c, best[c.key]) for c in cols]
        if notes:
            cells.append(str(entry.get("note") or "").replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ====================================================================== result and outputs
@dataclass
class BenchmarkResult:
    """What `evaluate_run` measured and wrote: rows (one per simulator × seed), table (`compare_table`
    per simulator), summary (the nested dict of summary.json), paths of the written files, seconds."""

    out_dir: Path
    rows: list[dict]
    table: list[dict]
    summary: dict
    paths: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0

    def row(self, simulator: str) -> dict:
        """The table entry (mean ± std over seeds) of one simulator."""
        for entry in self.table:
            if entry["simulator"] == simulator:
                return entry
        raise KeyError(f"no simulator {simulator!r} in the benchmark; have {[e['simulator'] for e in self.table]}")

    def markdown(self) -> str:
        return self.paths["results.md"].read_text() if "results.md" in self.paths else ""


def bar_chart(table: Sequence[Mapping], metric: str, title: str, path, group_key: str = "simulator") -> Path | None:
    """Bar chart (mean, std error bars) of one metric per group, written atomically as PNG with
    matplotlib's object API (no pyplot state, no backend switch). None when no group has a value."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    entries = [e for e in table if _finite([e.get(metric)])]
    if not entries:
        return None
    names = [str(e[group_key]) for e in entries]
    means = [float(e[metric]) for e in entries]
    stds = [float(e.get(f"{metric}_std", 0.0)) for e in entries]
    fig = Figure(figsize=(max(4.0, 0.9 * len(names) + 1.5), 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colors = ["0.6" if n == REFERENCE else "C0" if n.startswith("stage") else "C1" for n in names]
    ax.bar(range(len(names)), means, yerr=stds, color=colors, capsize=3)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
