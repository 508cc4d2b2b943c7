"""Training and validation curves (DESIGN §6), read from the CSV files the Trainer writes into a
stage's run folder: `loss_curve` (`losses.csv`: loss, learning rate, throughput, gradient norm...,
optionally EMA-smoothed) and `val_curve` (`val.csv`: validation metrics such as `w1_mm` against the
step). matplotlib figures like those of `viz.figures`; matplotlib is imported inside the functions.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sim2real_kit.errors import ConfigError, MissingArtifactError, Sim2RealError
from sim2real_kit.viz._common import PALETTE, _new_figure

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


def _read_csv(path: str | Path, what: str) -> dict[str, np.ndarray]:
    """Columns of a CSV as float arrays ('' and non-numbers -> NaN)."""
    path = Path(path)
    if not path.is_file():
        raise MissingArtifactError(f"{what} not found (the Trainer writes it into the stage's run folder)", path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise Sim2RealError(f"{what} holds no rows yet", path)
    header, body = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]
    cols: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        values = []
        for r in body:
            try:
                values.append(float(r[j]))
            except ValueError:
                values.append(math.nan)
        cols[name] = np.asarray(values, np.float64)
    return cols


def _ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's smoothing); NaNs are skipped."""
    out = np.full_like(values, np.nan)
    acc, norm = 0.0, 0.0
    for i, v in enumerate(values):
        if math.isfinite(v):
            acc = weight * acc + (1 - weight) * v
            norm = weight * norm + (1 - weight)
        if norm > 0:
            out[i] = acc / norm
    return out


def _as_paths(paths) -> list[Path]:
    return [Path(p) for p in paths] if isinstance(paths, (list, tuple)) else [Path(paths)]


def _labels(paths: list[Path], labels) -> list[str]:
    if labels is None:
        return [p.parent.name or p.stem for p in paths]
    labels = [labels] if isinstance(labels, str) else list(labels)
    if len(labels) != len(paths):
        raise ConfigError(f"{len(labels)} labels for {len(paths)} CSV files")
    return labels


def loss_curve(
    losses_csv: str | Path | Sequence[str | Path],
    labels: Sequence[str] | None = None,
    smooth: float = 0,
    logy: bool = True,
    *,
    columns: Sequence[str] = ("loss",),
    title: str | None = None,
) -> Figure:
    """Training curves from the Trainer's `losses.csv` (columns step, epoch, loss, lr, img_per_s,
    grad_norm, ...): one panel per name in `columns` (default the loss), one line per file.

    smooth: EMA weight in [0, 1) (TensorBoard-style); when > 0 the raw curve is drawn faint beneath.
    logy: log y axis when every value is positive."""
    if not 0 <= smooth < 1:
        raise ConfigError(f"smooth is an EMA weight in [0, 1), got {smooth!r}")
    paths = _as_paths(losses_csv)
    names = _labels(paths, labels)
    tables = [_read_csv(p, "losses.csv") for p in paths]
    columns = [columns] if isinstance(columns, str) else list(columns)
    fig = _new_figure(6.5 * len(columns), 4.0)
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    for ax, column in zip(axes, columns):
        positive = True
        for i, (path, name, table) in enumerate(zip(paths, names, tables)):
            if column not in table or "step" not in table:
                raise Sim2RealError(f"no column {column!r} (or 'step'); columns are {', '.join(table)}", path)
            step, values = table["step"], table[column]
            positive &= bool(np.all(values[np.isfinite(values)] > 0))
            color = PALETTE[i % len(PALETTE)] if len(paths) > 1 else "#1f77b4"
            label = name if len(paths) > 1 else None
            if smooth > 0:
                ax.plot(step, values, color=color, alpha=0.25, linewidth=0.8)
                ax.plot(step, _ema(values, smooth), color=color, linewidth=1.6, label=label)
            else:
                ax.plot(step, values, color=color, linewidth=1.4, label=label)
        if logy and positive:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(column)
        ax.grid(alpha=0.3)
        if len(paths) > 1:
            ax.legend(fontsize=9)
    suffix = f" (EMA {smooth:g})" if smooth > 0 else ""
    fig.suptitle(title or ("training loss" if columns == ["loss"] else "training curves") + suffix)
    return fig


def val_curve(
    val_csv: str | Path | Sequence[str | Path],
    metric: str | Sequence[str],
    labels: Sequence[str] | None = None,
    *,
    title: str | None = None,
    logy: bool = False,
) -> Figure:
    """Validation metrics against the training step from the Trainer's `val.csv` (columns `step` + the
    metrics, e.g. `w1_mm`, `w1_cad_mm`): one line per (file, metric). `metric`: a name or a list."""
    paths = _as_paths(val_csv)
    names = _labels(paths, labels)
    metrics = [metric] if isinstance(metric, str) else list(metric)
    fig = _new_figure(6.5, 4.0)
    ax = fig.subplots()
    k = 0
    for path, name, table in zip(paths, names, (_read_csv(p, "val.csv") for p in paths)):
        for m in metrics:
            if m not in table or "step" not in table:
                raise Sim2RealError(f"no column {m!r} (or 'step'); columns are {', '.join(table)}", path)
            label = " ".join(s for s in ((name if len(paths) > 1 else ""), m) if s)
            ax.plot(table["step"], table[m], marker="o", markersize=4, color=PALETTE[k % len(PALETTE)], label=label)
            k += 1
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(metrics[0] if len(metrics) == 1 else "value")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    fig.suptitle(title or f"validation: {', '.join(metrics)}")
    return fig
