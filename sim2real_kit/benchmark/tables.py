"""The benchmark's tables: mean ± std per simulator over seeds, the markdown table with the best value of
each column in bold when it stands out of the seeds' spread (`best_entries`), the same split into themed
tables (`THEMES`: depth, W1 by region, holes and tails, 3D, discriminator, stability, downstream), the rule
that marks unconverged baselines (`unconverged`), bar charts whose scale an outlier does not squash (one metric:
`bar_chart`; binned metrics grouped: `binned_bars`), CSV; and `BenchmarkResult`, what `evaluate_run` returns."""

from __future__ import annotations

import csv
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


# The benchmark table: metric groups (depth | W1 by region | holes, tails and edges | 3D | discriminator |
# stability | downstream) as columns. `w1_mm` is the matched W1 (pixels valid in CAD, simulated and real, both
# |residual| < data.max_diff_m); `w1_pooled_mm` the release's (each map's own pixels, every magnitude).
COLUMNS = (
    Column("abs_rel", "depth AbsRel ↓", "lower", 4),
    Column("rmse_mm", "depth RMSE mm ↓", "lower", 1),
    Column("delta1_pct", "depth δ1 % ↑", "higher", 1),
    Column("w1_mm", "residual W1 mm ↓", "lower", 2),
    Column("w1_pooled_mm", "pooled W1 mm (release) ↓", "lower", 2),
    Column("w1_edge0_2_mm", "W1 at edges 0-2 px mm ↓", "lower", 2),
    Column("w1_edge2_5_mm", "W1 2-5 px mm ↓", "lower", 2),
    Column("w1_edge5_mm", "W1 > 5 px mm ↓", "lower", 2),
    Column("w1_inc0_30_mm", "W1 incidence 0-30° mm ↓", "lower", 2),
    Column("w1_inc30_60_mm", "W1 30-60° mm ↓", "lower", 2),
    Column("w1_inc60_90_mm", "W1 60-90° mm ↓", "lower", 2),
    Column("hole_all_pct", "holes %", None, 1),
    Column("hole_gap_pct", "hole gap pp ↓", "lower", 1),
    Column("hole_edge_gap_pct", "edge-hole gap pp ↓", "lower", 1),
    Column("hole_flat_gap_pct", "flat-hole gap pp ↓", "lower", 1),
    Column("tail_pct", "tail % (≥ max diff)", None, 2),
    Column("tail_gap_pct", "tail gap pp ↓", "lower", 2),
    Column("edge_mae_mm", "edge residual mm", None, 1),
    Column("miou_pct", "3D mIoU % ↑", "higher", 1),
    Column("cd_l2_x1000", "3D CD-L2 ×1000 ↓", "lower", 3),
    Column("fscore_pct", "3D F % ↑", "higher", 1),
    Column("obj_miou_pct", "object mIoU % ↑", "higher", 1),
    Column("obj_cd_l2_x1000", "object CD-L2 ×1000 ↓", "lower", 3),
    Column("obj_fscore_pct", "object F % ↑", "higher", 1),
    Column("disc_fake_pct", "D judged fake % ↓", "lower", 1),
    Column("c2st_auc", "two-sample AUC ↓ (0.5: like real)", "lower", 3),
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
    ("w1_mm", "Residual W1 on matched pixels (mm, lower is better)"),
    ("hole_gap_pct", "Hole-rate gap to real (percentage points, lower is better)"),
    ("tail_gap_pct", "Gap to real in the share of |residual| >= max diff (percentage points, lower is better)"),
    ("cd_l2_x1000", "CD-L2 ×1000 vs fused real (lower is better)"),
    ("fscore_pct", "F-score % vs fused real (higher is better)"),
    ("obj_cd_l2_x1000", "Per-object CD-L2 ×1000 vs real (lower is better)"),
    ("disc_fake_pct", "Patches judged fake by the Stage-I discriminator (%, lower is better)"),
    ("c2st_auc", "Two-sample test: ROC-AUC real vs simulated on unseen scenes (0.5 = indistinguishable)"),
)


W1_BINS = ("w1_edge0_2_mm", "w1_edge2_5_mm", "w1_edge5_mm", "w1_inc0_30_mm", "w1_inc30_60_mm", "w1_inc60_90_mm")
W1_BIN_GROUPS = (  # `binned_bars`: (title, keys, bin labels)
    ("distance to CAD depth edges", W1_BINS[:3], ("0-2 px", "2-5 px", "> 5 px")),
    ("incidence of the CAD surface", W1_BINS[3:], ("0-30°", "30-60°", "60-90°")),
)


@dataclass(frozen=True)
class Theme:
    """A group of columns shown as one table: `name` (short key), `title` (the table's heading), `columns`,
    `note` (a line under the heading that says how the columns were measured)."""

    name: str
    title: str
    columns: tuple[Column, ...]
    note: str = ""


def _columns(*keys: str) -> tuple[Column, ...]:
    by_key = {c.key: c for c in (*COLUMNS, *DOWNSTREAM_COLUMNS)}
    return tuple(by_key[k] for k in keys)


# `COLUMNS` + `DOWNSTREAM_COLUMNS` grouped by what they measure: one table per theme in notebook 05 (every
# column in exactly one theme; tests/test_benchmark.py checks it).
THEMES = (
    Theme(
        "depth",
        "Depth realism (per pixel, against the real frame; W1 on matched pixels, pooled W1 as the release)",
        _columns("abs_rel", "rmse_mm", "delta1_pct", "w1_mm", "w1_pooled_mm"),
    ),
    Theme(
        "w1_bins",
        "Residual W1 by region (distance to CAD depth edges; incidence of the CAD surface)",
        _columns(*W1_BINS),
    ),
    Theme(
        "holes",
        "Holes, gross mismatches and edges",
        _columns(
            "hole_all_pct",
            "hole_gap_pct",
            "hole_edge_gap_pct",
            "hole_flat_gap_pct",
            "tail_pct",
            "tail_gap_pct",
            "edge_mae_mm",
        ),  # fmt: skip
    ),
    Theme(
        "3d",
        "3D realism (scene: TSDF-fused scenes vs the fused real scene; object: DisCo per object, mean)",
        _columns("miou_pct", "cd_l2_x1000", "fscore_pct", "obj_miou_pct", "obj_cd_l2_x1000", "obj_fscore_pct"),
    ),
    Theme(
        "discriminator",
        "Realism: two-sample test, and the frozen Stage-I discriminator",
        _columns("c2st_auc", "disc_fake_pct"),
        "Two-sample AUC: a fresh 3D patch discriminator per simulator, trained real vs it on the benchmark split "
        "and tested on the val split's scenes (0.5 = indistinguishable). Judged fake: the paper's own analog, the "
        "share of patches the frozen Stage-I discriminator calls fake (out of distribution for every other "
        "simulator, and Stage-II trained against its flags).",
    ),
    Theme(
        "stability",
        "Stability (across seeds and overlapping views)",
        _columns("seed_spread_mm", "view_mm", "view_gap_mm"),
    ),
    Theme(
        "downstream",
        "Downstream (networks trained on each simulator's output, tested on real)",
        DOWNSTREAM_COLUMNS,
    ),
)

# Simulators that are trained (and so can fail to converge); the others are fixed rules or the reference.
UNTRAINED = ("cad", "random", "physical", REFERENCE)
UNCONVERGED = "unconverged"  # the word added to an unconverged simulator's label


def loss_fell(losses: Sequence[float], window: float = 0.2) -> bool | None:
    """Did a training loss fall? Mean of the last `window` share of the logged values < mean of the first;
    None (unknown) with fewer than 4 finite values."""
    vals = _finite(losses)
    if len(vals) < 4:
        return None
    k = max(1, int(round(len(vals) * window)))
    return float(np.mean(vals[-k:])) < float(np.mean(vals[:k]))


def read_losses(path: str | Path, columns: Sequence[str] = ("loss_G", "loss")) -> list[float]:
    """The first of `columns` present in a Trainer's losses.csv (a GAN's generator loss, else the total);
    [] when the file or the columns are missing."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return []
    column = next((c for c in columns if rows and c in rows[0]), None)
    if column is None:
        return []
    out = []
    for r in rows:
        try:
            out.append(float(r[column]))
        except (TypeError, ValueError):
            continue
    return out


def baseline_losses(run_dir: str | Path, kinds: Sequence[str] = ("pix2pix", "cyclegan")) -> dict[str, list[float]]:
    """{kind: generator losses} of the GAN baselines a run folder trained (`baselines/<kind>/losses.csv`)."""
    from sim2real_kit.run import as_run

    run = as_run(run_dir)
    out = {k: read_losses(run.baseline_dir(k) / "losses.csv") for k in kinds}
    return {k: v for k, v in out.items() if v}


def unconverged(
    table: Sequence[Mapping],
    losses: Mapping[str, Sequence[float]] | None = None,
    *,
    baseline: str = "cad",
    metric: str = "w1_mm",
    untrained: Sequence[str] = UNTRAINED,
    group_key: str = "simulator",
) -> dict[str, str]:
    """{simulator: why} for the trained simulators of `table` (`compare_table` entries) that did not
    converge: its residual W1 is above clean CAD's (`baseline`: doing nothing is better), or its training
    loss (`losses`: {simulator: logged values}) did not fall (`loss_fell`). Fixed simulators (`untrained`)
    are never marked."""
    ref = next((e.get(metric) for e in table if e.get(group_key) == baseline), None)
    ref = _finite([ref])
    out: dict[str, str] = {}
    for entry in table:
        name = str(entry.get(group_key))
        if name in untrained:
            continue
        reasons = []
        value = _finite([entry.get(metric)])
        if ref and value and value[0] > ref[0]:
            reasons.append(f"W1 {value[0]:.1f} mm > clean CAD's {ref[0]:.1f} mm")
        if losses and name in losses and loss_fell(losses[name]) is False:
            reasons.append("training loss did not fall")
        if reasons:
            out[name] = "; ".join(reasons)
    return out


def marked_labels(
    names: Sequence[str], labels: Mapping[str, str] | None = None, flagged: Mapping[str, str] | None = None
) -> dict[str, str]:
    """{name: label}, "(unconverged)" appended to the `flagged` ones (labels default to the names)."""
    out = {}
    for n in names:
        label = (labels or {}).get(n, n)
        out[n] = f"{label} ({UNCONVERGED})" if n in (flagged or {}) else label
    return out


def _best(table: Sequence[Mapping], column: Column, group_key: str, exclude: Sequence[str]) -> float | None:
    vals = [r.get(column.key) for r in table if r.get(group_key) not in exclude]
    vals = _finite(vals)
    if not vals or column.better is None:
        return None
    return min(vals) if column.better == "lower" else max(vals)


NO_SPREAD = "one seed: no spread"  # the mark of a table whose bold values had no seed spread to test against


def _spread(entry: Mapping, key: str) -> float | None:
    """The seeds' std of a table entry's metric, None when unknown (fewer than two values)."""
    std = _finite([entry.get(f"{key}_std")])
    return std[0] if entry.get(f"{key}_n", 1) > 1 and std else None


def best_entries(
    table: Sequence[Mapping], column: Column, group_key: str = "simulator", exclude: Sequence[str] = (REFERENCE,)
) -> tuple[list[str], bool]:
    """(names to show in bold, spread unknown) for one column. The best entry (rows in `exclude` do not
    compete) is bold only when its gap to the second best exceeds the seeds' std of both (of the one whose
    std is known when the other ran one seed). When neither has a known std (one seed each), today's rule
    holds: every entry equal to the best at the column's decimals is bold, and the second value is True so
    that the table says "one seed: no spread". A lone competitor is bold; no `better`: nothing is."""
    if column.better is None:
        return [], False
    entries = [e for e in table if e.get(group_key) not in exclude and _finite([e.get(column.key)])]
    if not entries:
        return [], False
    entries.sort(key=lambda e: float(e[column.key]) * (1 if column.better == "lower" else -1))
    best = entries[0]
    if len(entries) == 1:
        return [str(best.get(group_key))], False
    second = entries[1]
    known = [s for s in (_spread(best, column.key), _spread(second, column.key)) if s is not None]
    if not known:
        top = round(float(best[column.key]), column.digits)
        return [str(e.get(group_key)) for e in entries if round(float(e[column.key]), column.digits) == top], True
    gap = abs(float(best[column.key]) - float(second[column.key]))
    return ([str(best.get(group_key))] if gap > max(known) else []), False


def _cell(entry: Mapping, column: Column, bold: bool) -> str:
    mean = entry.get(column.key)
    if mean is None or not isinstance(mean, (int, float)) or not math.isfinite(float(mean)):
        return "—"
    text = f"{mean:.{column.digits}f}"
    if entry.get(f"{column.key}_n", 1) > 1:
        text += f" ± {entry.get(f'{column.key}_std', 0.0):.{column.digits}f}"
    return f"**{text}**" if bold else text


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
    one value), "—" for NaN, the best value of each column in bold when it stands out of the seeds'
    spread (`best_entries`; rows in `exclude_from_best`, the reference, do not compete), a seeds column
    and the notes. `header`: a line above the table. A column whose bold value had no spread to be
    tested against (one seed) marks the table with a line "one seed: no spread" below it."""
    cols = [c if isinstance(c, Column) else Column(*c) for c in columns]
    bold, no_spread = {}, []
    for c in cols:
        bold[c.key], unknown = best_entries(table, c, group_key, exclude_from_best)
        if unknown:
            no_spread.append(c.label)
    head = [group_key, "seeds", *[c.label for c in cols]] + (["note"] if notes else [])
    lines = [header, ""] if header else []
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for entry in table:
        name = str(entry.get(group_key))
        label = (labels or {}).get(name)
        seeds = max([entry.get(f"{c.key}_n", 0) for c in cols] + [0])
        cells = [f"{label} (`{name}`)" if label and label != name else name, str(seeds)]
        cells += [_cell(entry, c, name in bold[c.key]) for c in cols]
        if notes:
            cells.append(str(entry.get("note") or "").replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    if no_spread:
        lines += ["", f"_{NO_SPREAD}: bold is the best value without a test against the seeds' spread._"]
    return "\n".join(lines) + "\n"


def themed_markdown(
    table: Sequence[Mapping],
    themes: Sequence[Theme] = THEMES,
    group_key: str = "simulator",
    labels: Mapping[str, str] | None = None,
    flagged: Mapping[str, str] | None = None,
    exclude_from_best: Sequence[str] = (REFERENCE,),
    level: str = "####",
) -> str:
    """`markdown_table` split by theme: a heading and a table per theme that has any value (the columns
    nothing measured are left out), then the notes (the rows' notes and why a simulator is marked
    "(unconverged)", one line each). `flagged`: {simulator: why} from `unconverged`: such rows get
    "(unconverged)" in their label and do not compete for the best value."""
    names = [str(e.get(group_key)) for e in table]
    shown = marked_labels(names, labels, flagged)
    exclude = (*exclude_from_best, *(flagged or {}))
    parts = []
    for theme in themes:
        cols = [c for c in theme.columns if any(_finite([e.get(c.key)]) for e in table)]
        if not cols:
            continue
        parts.append(f"{level} {theme.title}\n" + (f"\n{theme.note}\n" if theme.note else ""))
        parts.append(markdown_table(table, cols, group_key, exclude_from_best=exclude, labels=shown, notes=False))
    notes = []
    for e in table:
        name = str(e.get(group_key))
        why = [(flagged or {}).get(name, ""), str(e.get("note") or "")]
        why = [w for w in why if w]
        if why:
            notes.append(f"- `{name}`: " + "; ".join(why))
    if notes:
        parts.append(f"{level} Notes\n\n" + "\n".join(notes) + "\n")
    return "\n".join(parts)


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

    def unconverged(self) -> dict[str, str]:
        """{simulator: why} of `unconverged`, with the GAN baselines' training losses of the run."""
        run_dir = self.summary.get("run")
        losses = baseline_losses(run_dir) if run_dir and Path(run_dir).is_dir() else {}
        return unconverged(self.table, losses)

    def labels(self) -> dict[str, str]:
        """{simulator: label}, "(unconverged)" appended where `unconverged` says so."""
        names = [e["simulator"] for e in self.table]
        sims = self.summary.get("simulators", {})
        return marked_labels(names, {n: sims.get(n, {}).get("label", n) for n in names}, self.unconverged())

    def themed_markdown(self) -> str:
        """The benchmark as one table per `THEMES` entry (unconverged baselines marked, out of the best)."""
        sims = self.summary.get("simulators", {})
        labels = {e["simulator"]: sims.get(e["simulator"], {}).get("label", e["simulator"]) for e in self.table}
        return themed_markdown(self.table, labels=labels, flagged=self.unconverged())


def clip_limit(values: Sequence[float], errors: Sequence[float] | None = None, ratio: float = 4.0) -> float | None:
    """Top of a bar chart's axis that keeps the ordinary bars readable when a few are far larger (e.g.
    unconverged GANs at ~500 mm W1 next to simulators at ~50 mm): sorted from the top, the first value more
    than `ratio` × the next one and everything above it are outliers (at most half of the bars); the limit
    is 1.3 × the largest remaining bar (its error bar included). None when there is no such gap, fewer than
    3 finite values, or a negative value."""
    vals = [float(v) for v in values]
    errs = [float(e) if e is not None and math.isfinite(float(e)) else 0.0 for e in (errors or [0.0] * len(vals))]
    pairs = sorted(((v, e) for v, e in zip(vals, errs) if math.isfinite(v)), reverse=True)
    if len(pairs) < 3 or pairs[-1][0] < 0:
        return None
    for k in range((len(pairs) - 1) // 2):
        if pairs[k + 1][0] > 0 and pairs[k][0] > ratio * pairs[k + 1][0]:
            return 1.3 * max(v + e for v, e in pairs[k + 1 :])
    return None


def bar_chart(
    table: Sequence[Mapping],
    metric: str,
    title: str,
    path,
    group_key: str = "simulator",
    flagged: Mapping[str, str] | None = None,
    clip: bool = True,
) -> Path | None:
    """Bar chart (mean, std error bars) of one metric per group, written atomically as PNG with
    matplotlib's object API (no pyplot state, no backend switch). None when no group has a value.

    flagged: {group: why} marked "(unconverged)" in the labels; default `unconverged(table)` (the W1 rule).
    clip: bars far above the others (`clip_limit`) are cut at the axis' top, hatched and labelled with
    their value, so they do not squash the rest."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    entries = [e for e in table if _finite([e.get(metric)])]
    if not entries:
        return None
    names = [str(e[group_key]) for e in entries]
    flagged = unconverged(table, group_key=group_key) if flagged is None else flagged
    shown = marked_labels(names, None, flagged)
    means = [float(e[metric]) for e in entries]
    stds = [float(e.get(f"{metric}_std", 0.0) or 0.0) for e in entries]
    limit = clip_limit(means, stds) if clip else None
    clipped = [limit is not None and m > limit for m in means]
    heights = [limit if c else m for m, c in zip(means, clipped)]
    fig = Figure(figsize=(max(4.0, 0.9 * len(names) + 1.5), 3.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colors = ["0.6" if n == REFERENCE else "C0" if n.startswith("stage") else "C1" for n in names]
    bars = ax.bar(
        range(len(names)),
        heights,
        yerr=[0.0 if c else sd for sd, c in zip(stds, clipped)],
        color=colors,
        capsize=3,
    )
    for bar, c, m in zip(bars, clipped, means):
        if c:
            bar.set_hatch("//")
            bar.set_edgecolor("white")
            ax.annotate(
                f"{m:.0f} ↑" if abs(m) >= 1000 else f"{m:.3g} ↑",
                (bar.get_x() + bar.get_width() / 2, limit),
                ha="center",
                va="top",
                fontsize=8,
                xytext=(0, -3),
                textcoords="offset points",
                color="black",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
            )
    if limit is not None:
        ax.set_ylim(top=limit)
        ax.set_title(f"{title}\n(hatched bars are cut at the axis top; their value is written on them)", fontsize=9)
    else:
        ax.set_title(title, fontsize=9)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([shown[n] for n in names], rotation=30, ha="right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def binned_bars(
    table: Sequence[Mapping],
    groups: Sequence[tuple[str, Sequence[str], Sequence[str]]] = W1_BIN_GROUPS,
    group_key: str = "simulator",
    labels: Mapping[str, str] | None = None,
    title: str = "Residual W1 by region (mm, lower is better; mean ± std over seeds)",
    path=None,
    clip: bool = True,
):
    """Grouped bar chart of binned metrics: one panel per group of `groups` ((title, keys, bin labels);
    default the residual W1 by distance to CAD edges and by CAD incidence), the bins along x, one bar per
    simulator in one colour per simulator (legend: `labels`, default the names), std error bars. Bars far
    above the others (`clip_limit` over all bars) are cut at the axis top, hatched, with their value written.
    Returns the matplotlib Figure, also written atomically as PNG to `path` when given; None when no
    simulator has a value. The figure is made by pyplot and closed at once (pyplot keeps no reference):
    that sets up a Jupyter kernel's inline display of Figures, so `display(binned_bars(...))` shows the
    image even when no pyplot figure was made before."""
    import matplotlib.pyplot as plt

    keys = [k for _, ks, _ in groups for k in ks]
    entries = [e for e in table if _finite([e.get(k) for k in keys])]
    if not entries:
        return None
    names = [str(e[group_key]) for e in entries]
    means = [[float(e.get(k, math.nan)) for k in keys] for e in entries]
    stds = [[float(e.get(f"{k}_std", 0.0) or 0.0) for k in keys] for e in entries]
    flat = [m for row in means for m in row if math.isfinite(m)]
    errs = [s for row_m, row_s in zip(means, stds) for m, s in zip(row_m, row_s) if math.isfinite(m)]
    limit = clip_limit(flat, errs) if clip else None
    fig = plt.figure(figsize=(max(6.0, 1.2 * len(names) + 4.0), 3.6), dpi=100)
    plt.close(fig)
    axes = [fig.add_subplot(1, len(groups), g + 1) for g in range(len(groups))]
    width = 0.8 / len(names)
    col = 0
    for ax, (group_title, ks, bin_labels) in zip(axes, groups):
        for i, name in enumerate(names):
            vals = means[i][col : col + len(ks)]
            sds = stds[i][col : col + len(ks)]
            x = np.arange(len(ks)) - 0.4 + width * (i + 0.5)
            clipped = [limit is not None and math.isfinite(v) and v > limit for v in vals]
            heights = [limit if c else (v if math.isfinite(v) else 0.0) for v, c in zip(vals, clipped)]
            colour = "0.6" if name == REFERENCE else f"C{i % 10}"
            bars = ax.bar(
                x,
                heights,
                width,
                yerr=[0.0 if c or not math.isfinite(v) else sd for v, sd, c in zip(vals, sds, clipped)],
                color=colour,
                capsize=2,
                label=(labels or {}).get(name, name),
            )
            for bar, c, v in zip(bars, clipped, vals):
                if c:
                    bar.set_hatch("//")
                    bar.set_edgecolor("white")
                    ax.annotate(
                        f"{v:.3g}",
                        (bar.get_x() + bar.get_width() / 2, limit),
                        ha="center",
                        va="top",
                        fontsize=7,
                        rotation=90,
                        xytext=(0, -3),
                        textcoords="offset points",
                    )
        col += len(ks)
        ax.set_xticks(range(len(ks)))
        ax.set_xticklabels(list(bin_labels), fontsize=8)
        ax.set_title(group_title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        if limit is not None:
            ax.set_ylim(top=limit)
    axes[0].set_ylabel("W1 mm")
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    return fig
