"""Plain values, CSV files and markdown tables: the one home of the small writers behind every
results table of the kit (ablation grids, benchmark, real sample, downstream).

- :func:`plain` turns what a run computes (dicts, tuples, numpy scalars and arrays, torch tensors,
  Paths) into plain Python values that JSON and YAML writers take as they are.
- :func:`write_csv` writes rows (mappings) as a CSV file, atomically, with one rule for what is
  missing: ``None`` is an empty cell (no value), NaN is written ``nan`` (a value that is not a number:
  a metric that could not be computed), as every CSV of the kit has always held.
- :func:`format_value` and :func:`markdown_table` render numbers and rows as GitHub markdown.

Nothing here imports numpy or torch: a value can only be a numpy array or a torch tensor when its
library is already loaded, so both are looked up in ``sys.modules``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sim2real_kit.io import atomic_write_text

ALIGN = {None: "---", "left": ":---", "right": "---:", "center": ":---:"}


# ============================================================================ plain values
def plain(obj: Any, *, strict_json: bool = False) -> Any:
    """A copy of `obj` made of plain Python values (dict with str keys, list, str, int, float, bool,
    None), recursively.

    Mappings -> dict (keys through `str`), lists and tuples -> list, numpy scalars -> int / float /
    bool, numpy arrays and torch tensors -> (nested) lists or a number for 0-d, Paths -> str.
    NaN and ±inf stay floats; `strict_json=True` makes them None (strict JSON has no NaN; the
    benchmark's summary.json is written that way). Any other object is returned as it is.
    """
    if isinstance(obj, Mapping):
        return {str(k): plain(v, strict_json=strict_json) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v, strict_json=strict_json) for v in obj]
    if isinstance(obj, bool) or obj is None:
        return obj
    if isinstance(obj, str):
        return str(obj)  # numpy's str_ is a str subclass
    if isinstance(obj, float):
        value = float(obj)  # np.float64 is a float subclass
        return None if strict_json and not math.isfinite(value) else value
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(obj, np.ndarray):
            return plain(obj.tolist(), strict_json=strict_json)
        if isinstance(obj, np.generic):
            return plain(obj.item(), strict_json=strict_json)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        return plain(obj.detach().cpu().tolist(), strict_json=strict_json)
    return obj


# ============================================================================ CSV
def csv_cell(value: Any, nan: str = "nan") -> Any:
    """What `write_csv` writes for one value: None -> "", NaN -> `nan`, other floats -> `repr`
    (every digit, "inf" / "-inf"; a numpy float32 / float16 with the shortest digits of its own
    precision, `np.float32(0.3)` -> "0.3"), lists and dicts -> JSON, other numpy / torch values as
    plain values, anything else as `csv` writes it (`str`)."""
    if value is None:
        return ""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.floating) and not isinstance(value, float):
        return nan if np.isnan(value) else str(value)  # float32: its own shortest digits, "0.3"
    value = plain(value)
    if isinstance(value, float):
        return nan if math.isnan(value) else repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def write_csv(
    path: str | Path, rows: Sequence[Mapping], columns: Sequence[str] | None = None, *, nan: str = "nan"
) -> Path:
    """Write `rows` as CSV to `path` atomically and return the path.

    columns: the header, in order; a row's other keys are left out, a missing key is an empty cell.
        Default: the union of the rows' keys in order of first appearance.
    NaN rule: None and NaN are written as an empty cell (`csv.DictReader` reads "", pandas NaN).
        `nan="nan"` writes NaN as `nan` (runner and benchmark CSV files up to now); ±inf is always
        "inf" / "-inf". Floats are written with `repr` (round-trip exact); see :func:`csv_cell`.
    """
    if columns is None:
        columns = []
        for row in rows:
            columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(row.get(k), nan) for k in columns})
    atomic_write_text(path, buf.getvalue())
    return Path(path)


# ============================================================================ markdown
def format_value(value: Any) -> str:
    """A value as a short table cell: None -> "", bools lower case, ints as they are, floats with 4
    significant digits ("nan" for NaN), lists as JSON cut at 60 characters, anything else `str`."""
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, list):
        text = json.dumps(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return str(value)


def markdown_table(
    rows: Sequence[Mapping],
    columns: Sequence[str],
    formats: Mapping[str, str | Callable[[Any], str]] | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    align: Mapping[str, str] | None = None,
) -> str:
    """A GitHub markdown table of `rows`, one column per key in `columns`, ending with a newline.

    formats: per column a format spec (`format(value, ".2f")`) or a callable value -> text; other
        columns use :func:`format_value`. A missing key or None is an empty cell in every case.
    labels: header text per column (default: the key). align: per column "left", "right" or
        "center" (default: `---`, no alignment). Cells are written as given: a `|` inside a cell
        must be replaced by the caller.
    """
    formats, labels, align = formats or {}, labels or {}, align or {}
    bad = sorted({a for a in align.values() if a not in ALIGN})
    if bad:
        raise ValueError(f"align must be one of left, right, center; got {bad}")

    def cell(row: Mapping, key: str) -> str:
        value, fmt = row.get(key), formats.get(key)
        if value is None:
            return ""
        if fmt is None:
            return format_value(value)
        return fmt(value) if callable(fmt) else format(value, fmt)

    lines = [
        "| " + " | ".join(labels.get(k, k) for k in columns) + " |",
        "|" + "".join(ALIGN[align.get(k)] + "|" for k in columns),
    ]
    lines += ["| " + " | ".join(cell(row, k) for k in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


__all__ = ["plain", "csv_cell", "write_csv", "format_value", "markdown_table"]
