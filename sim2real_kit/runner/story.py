"""The numbers of a run report (`runner.index`), read from the notebooks' metrics.json files: the method's
story (clean CAD → Stage-I → Stage-I control → Stage-II, against the real capture), three headline
numbers per notebook and the benchmark's summary. Pure functions of the metrics; no HTML here.

Metrics are passed as {notebook name: metrics dict} (e.g. {"02_stage1": {...}}); notebooks are matched by
their short name (`02_stage1` -> `stage1`), so a run of a subset of the notebooks or renumbered notebooks
still finds its numbers. A value nobody wrote is None (the report shows "—").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sim2real_kit.runner.notebooks import short_name

MISSING = "—"


def lookup(metrics: Any, dotted: str) -> Any:
    """metrics["a"]["b"] for "a.b" (None when a level is missing). Keys holding dots themselves
    (`train.flag_rate` written flat) are found too."""
    if not isinstance(metrics, Mapping):
        return None
    if dotted in metrics:
        return metrics[dotted]
    head, _, rest = dotted.partition(".")
    if not rest:
        return None
    return lookup(metrics.get(head), rest)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def by_short_name(metrics: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """{short name: (notebook name, metrics)} (the last notebook of a short name wins)."""
    return {short_name(name): (name, m) for name, m in metrics.items() if isinstance(m, Mapping)}


@dataclass(frozen=True)
class Source:
    """Where a number comes from: notebook short name, dotted key, and how to scale it
    ("x1" as written, "x100" a fraction shown in %, "hole_from_valid" 100 × (1 - valid share))."""

    notebook: str
    key: str
    scale: str = "x1"

    def read(self, notebooks: Mapping[str, tuple[str, Any]]) -> tuple[float | None, str | None]:
        name, metrics = notebooks.get(self.notebook, (None, None))
        value = _number(lookup(metrics, self.key)) if metrics is not None else None
        if value is None:
            return None, None
        if self.scale == "x100":
            value *= 100.0
        elif self.scale == "hole_from_valid":
            value = 100.0 * (1.0 - value)
        return value, f"{name}: {self.key}"


def first_of(notebooks: Mapping[str, tuple[str, Any]], sources: Sequence[Source]) -> tuple[float | None, str | None]:
    """The first source that holds a number: (value, "NN_name: key"), else (None, None)."""
    for source in sources:
        value, where = source.read(notebooks)
        if value is not None:
            return value, where
    return None, None


# ====================================================================== the method's story
STORY_ROWS = (
    ("cad", "clean CAD", "no simulation: the rendered depth as it is"),
    ("stage1", "Stage-I", "residual diffusion conditioned on the CAD depth (notebook 02)"),
    ("stage1_long", "Stage-I control", "Stage-I trained on for Stage-II's steps: more steps, no re-weighting"),
    ("stage2", "Stage-II", "conditioned on CAD + Stage-I, loss re-weighted to the flagged patches (notebook 04)"),
    ("real", "real capture", "the reference"),
)
STORY_COLUMNS = (
    ("w1", "residual W1 to real", "mm", "lower", 1),
    ("holes", "hole rate", "%", None, 1),
    ("fake", "judged fake by the frozen Stage-I discriminator", "%", "lower", 1),
    ("auc", "two-sample AUC (0.5: like real)", "", "lower", 3),
)


def _bench(sim: str, metric: str) -> Source:
    return Source("benchmark", f"simulators.{sim}.{metric}.mean")


# For each (row, column) the sources in order of preference: notebook 04 first (one frame set for every
# row: the val split, Stage-I and Stage-II from the same chain), then 02 / 03, then the benchmark (05). The
# two-sample AUC is the benchmark's alone (a fresh discriminator per simulator trained on the benchmark split):
# notebook 03's val AUC is a discriminator trained on the frames Stage-I trained on, another quantity.
STORY_SOURCES: dict[tuple[str, str], tuple[Source, ...]] = {
    ("cad", "w1"): (Source("stage2", "w1_cad_mm"), Source("stage1", "w1_cad_mm"), _bench("cad", "w1_mm")),
    ("cad", "holes"): (_bench("cad", "hole_all_pct"), Source("data", "cad_valid_share", "hole_from_valid")),
    ("cad", "fake"): (Source("stage2", "acc_cad", "x100"), _bench("cad", "disc_fake_pct")),
    ("cad", "auc"): (_bench("cad", "c2st_auc"),),
    ("stage1", "w1"): (Source("stage2", "w1_stage1_mm"), Source("stage1", "w1_mm"), _bench("stage1", "w1_mm")),
    ("stage1", "holes"): (
        Source("stage2", "per_stage.stage1.hole_rate", "x100"),
        Source("stage1", "hole_rate", "x100"),
        _bench("stage1", "hole_all_pct"),
    ),
    ("stage1", "fake"): (
        Source("stage2", "acc_stage1", "x100"),
        Source("discriminator", "acc_stage1", "x100"),
        Source("discriminator", "val.flag_rate", "x100"),
        _bench("stage1", "disc_fake_pct"),
    ),
    ("stage1", "auc"): (_bench("stage1", "c2st_auc"),),
    ("stage1_long", "w1"): (Source("stage2", "w1_stage1_long_mm"),),
    ("stage1_long", "holes"): (Source("stage2", "per_stage.stage1_long.hole_rate", "x100"),),
    ("stage1_long", "fake"): (Source("stage2", "acc_stage1_long", "x100"),),
    ("stage1_long", "auc"): (_bench("stage1_long", "c2st_auc"),),
    ("stage2", "w1"): (Source("stage2", "w1_stage2_mm"), _bench("stage2", "w1_mm")),
    ("stage2", "holes"): (Source("stage2", "per_stage.stage2.hole_rate", "x100"), _bench("stage2", "hole_all_pct")),
    ("stage2", "fake"): (Source("stage2", "acc_stage2", "x100"), _bench("stage2", "disc_fake_pct")),
    ("stage2", "auc"): (_bench("stage2", "c2st_auc"),),
    ("real", "w1"): (),
    ("real", "holes"): (
        Source("stage2", "per_stage.stage1.hole_rate_real", "x100"),
        Source("stage1", "hole_rate_real", "x100"),
        _bench("real", "hole_all_pct"),
        Source("data", "hole_rate", "x100"),
    ),
    ("real", "fake"): (Source("stage2", "acc_real", "x100"), _bench("real", "disc_fake_pct")),
    ("real", "auc"): (),
}


def story_table(metrics: Mapping[str, Any]) -> list[dict]:
    """The method in numbers: one dict per `STORY_ROWS` entry with "key", "label", "note" and per
    `STORY_COLUMNS` column c: c -> value (None when no notebook wrote it) and f"{c}_source" ("NN_name: key"),
    every row always (a stage that did not run shows "—" in the report)."""
    notebooks = by_short_name(metrics)
    rows = []
    for key, label, note in STORY_ROWS:
        row: dict = {"key": key, "label": label, "note": note}
        for col, *_ in STORY_COLUMNS:
            row[col], row[f"{col}_source"] = first_of(notebooks, STORY_SOURCES.get((key, col), ()))
        rows.append(row)
    return rows


def flagged_shares(metrics: Mapping[str, Any]) -> dict[str, float]:
    """{"train": %, "val": %}: the share of Stage-I patches the discriminator flagged (notebook 03, else 04)."""
    notebooks = by_short_name(metrics)
    out = {}
    for split in ("train", "val"):
        value, _ = first_of(
            notebooks,
            (Source("discriminator", f"{split}.flag_rate", "x100"), Source("stage2", f"flagged_{split}", "x100")),
        )
        if value is not None:
            out[split] = value
    return out


# ====================================================================== headline numbers per notebook
@dataclass(frozen=True)
class Headline:
    """One headline number of a notebook: label, sources (first found wins), unit and decimals; `versus`:
    a second number shown after it ("43.0 mm vs 64.3 mm")."""

    label: str
    sources: tuple[Source, ...]
    unit: str = ""
    digits: int = 1
    versus: tuple[str, tuple[Source, ...]] | None = None


def _s(key: str, scale: str = "x1", notebook: str = "") -> Source:
    return Source(notebook, key, scale)


HEADLINES: dict[str, tuple[Headline, ...]] = {
    "data": (
        Headline("frames train / val", (_s("train_frames"),), digits=0, versus=("/", (_s("val_frames"),))),
        Headline("CAD → real residual W1", (_s("w1_cad_vs_real_mm"),), " mm"),
        Headline("real hole rate", (_s("hole_rate", "x100"),), " %"),
    ),
    "stage1": (
        Headline("Stage-I W1", (_s("w1_mm"),), " mm", versus=("vs clean CAD", (_s("w1_cad_mm"),))),
        Headline("hole rate", (_s("hole_rate", "x100"),), " %", versus=("vs real", (_s("hole_rate_real", "x100"),))),
        Headline("final loss", (_s("train.loss"),), digits=3),
    ),
    "discriminator": (
        Headline("val AUC", (_s("val_auc"),), digits=3),
        Headline("Stage-I patches flagged (val)", (_s("val.flag_rate", "x100"),), " %"),
        Headline("real patches judged real (val)", (_s("val.acc_real", "x100"),), " %"),
    ),
    "stage2": (
        Headline("Stage-II W1", (_s("w1_stage2_mm"),), " mm", versus=("vs Stage-I", (_s("w1_stage1_mm"),))),
        Headline(
            "judged fake, Stage-II",
            (_s("acc_stage2", "x100"),),
            " %",
            versus=("vs Stage-I", (_s("acc_stage1", "x100"),)),
        ),
        Headline("control W1 (Stage-I trained on)", (_s("w1_stage1_long_mm"),), " mm"),
    ),
    "benchmark": (
        Headline("Stage-II W1", (_s("simulators.stage2.w1_mm.mean"),), " mm"),
        Headline("clean CAD W1", (_s("simulators.cad.w1_mm.mean"),), " mm"),
        Headline(
            "real sample: Stage-I W1, held-out object",
            (_s("real_sample.w1_mm.heldout.stage1"),),
            " mm",
            2,
            versus=("vs CAD", (_s("real_sample.w1_mm.heldout.cad"),)),
        ),
    ),
    "ablations": (
        Headline("variants run", (_s("ran"),), digits=0),
        Headline("variants failed", (_s("failed"),), digits=0),
        Headline("full: Stage-II W1", (_s("variants.full.stage2.w1_final_mm.mean"),), " mm"),
    ),
}


def _read_headline_value(metrics: Any, sources: Sequence[Source]) -> tuple[float | None, str | None]:
    for s in sources:
        raw = lookup(metrics, s.key)
        if isinstance(raw, (list, dict)):  # counts: "ran": [...], "failed": {...}
            return float(len(raw)), s.key
        value, where = Source("x", s.key, s.scale).read({"x": ("", metrics)})
        if value is not None:
            return value, s.key
    return None, None


def fmt_number(value: float | None, digits: int = 1, unit: str = "") -> str:
    """1234.5 -> "1234.5", None -> "—"; `unit` appended ("43.0 mm")."""
    if value is None:
        return MISSING
    return f"{value:.{digits}f}{unit}"


def headlines(name: str, metrics: Any) -> list[tuple[str, str, str]]:
    """The headline numbers of notebook `name` (full or short name): [(label, text, source key)]; a
    notebook without entries in `HEADLINES` gets its first three numeric metrics."""
    spec = HEADLINES.get(short_name(name))
    if spec is None:
        flat = [(k, v) for k, v in _flat(metrics).items() if _number(v) is not None][:3]
        return [(k, f"{v:.4g}", k) for k, v in flat]
    out = []
    for h in spec:
        value, key = _read_headline_value(metrics, h.sources)
        text = fmt_number(value, h.digits, h.unit)
        if h.versus is not None and value is not None:
            word, sources = h.versus
            other, _ = _read_headline_value(metrics, sources)
            if other is not None:
                text += f" {word} {fmt_number(other, h.digits, h.unit)}"
        out.append((h.label, text, key or ", ".join(s.key for s in h.sources)))
    return out


def _flat(metrics: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(metrics, Mapping):
        return {}
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ====================================================================== the benchmark (notebook 05)
BENCHMARK_COLUMNS = (
    "w1_mm",
    "hole_gap_pct",
    "cd_l2_x1000",
    "fscore_pct",
    "c2st_auc",
    "disc_fake_pct",
    "ds_cls_acc_pct",
)


def benchmark_table(summary: Mapping[str, Any], losses: Mapping[str, Sequence[float]] | None = None) -> dict | None:
    """The benchmark summary (notebook 05's metrics) as a small table: {"columns": [Column], "rows": [{
    "simulator", "label" ("(unconverged)" appended per `benchmark.tables.unconverged`), "unconverged" (why or
    ""), "cells": [(text, is_best)]}]}; None when the summary has no simulators."""
    from sim2real_kit.benchmark.simulators import REFERENCE, SIMULATORS
    from sim2real_kit.benchmark.tables import COLUMNS, DOWNSTREAM_COLUMNS, marked_labels, unconverged

    sims = summary.get("simulators") if isinstance(summary, Mapping) else None
    if not isinstance(sims, Mapping) or not sims:
        return None
    # the benchmark's order (summary.json's keys are sorted): SIMULATORS, others after, the reference last
    rank = {n: i for i, n in enumerate(s for s in SIMULATORS if s != REFERENCE)}
    order = sorted(sims, key=lambda n: (n == REFERENCE, rank.get(n, len(rank)), n))
    sims = {n: sims[n] for n in order}
    by_key = {c.key: c for c in (*COLUMNS, *DOWNSTREAM_COLUMNS)}
    table = []
    for name, entry in sims.items():
        row: dict = {"simulator": name}
        for key, stat in entry.items() if isinstance(entry, Mapping) else ():
            if isinstance(stat, Mapping) and "mean" in stat:
                row[key] = _number(stat.get("mean"))
        table.append(row)
    columns = [by_key[k] for k in BENCHMARK_COLUMNS if k in by_key and any(r.get(k) is not None for r in table)]
    flagged = unconverged([{k: (math.nan if v is None else v) for k, v in r.items()} for r in table], losses)
    labels = marked_labels(list(sims), {n: str((sims[n] or {}).get("label", n)) for n in sims}, flagged)
    best = {}
    for c in columns:
        vals = [r[c.key] for r in table if r.get(c.key) is not None and r["simulator"] not in (REFERENCE, *flagged)]
        if vals and c.better:
            best[c.key] = round(min(vals) if c.better == "lower" else max(vals), c.digits)
    rows = []
    for r in table:
        cells = []
        for c in columns:
            v = r.get(c.key)
            is_best = (
                v is not None and r["simulator"] not in (REFERENCE, *flagged) and round(v, c.digits) == best.get(c.key)
            )
            cells.append((fmt_number(v, c.digits), is_best))
        rows.append(
            {
                "simulator": r["simulator"],
                "label": labels[r["simulator"]],
                "unconverged": flagged.get(r["simulator"], ""),
                "reference": r["simulator"] == REFERENCE,
                "cells": cells,
            }
        )
    return {"columns": columns, "rows": rows}
