"""The Trainer's logs (`sim2real_kit.training`): a window of logged values summed on the device between log rows,
and append-only CSV files (losses.csv, val.csv) that a resumed run truncates to its checkpoint."""

from __future__ import annotations

import csv
import io
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sim2real_kit.io import atomic_write_text


class LogWindow:
    """Sums of logged values since the last log row, kept on the device (no host sync between log steps)."""

    def __init__(self):
        self.sums: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.steps = 0
        self.images = 0
        self._t0 = time.perf_counter()

    def add(self, key: str, value) -> None:
        if isinstance(value, torch.Tensor):
            value = value.detach().float()
            value = value.mean() if value.ndim else value
        else:
            value = float(value)
        self.sums[key] = self.sums.get(key, 0.0) + value
        self.counts[key] = self.counts.get(key, 0) + 1

    def means(self, device) -> tuple[list[str], torch.Tensor] | None:
        if not self.sums:
            return None
        keys = sorted(self.sums)
        vec = torch.stack(
            [
                torch.as_tensor(self.sums[k], dtype=torch.float32, device=device).reshape(()) / self.counts[k]
                for k in keys
            ]
        )
        return keys, vec

    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def reset(self) -> None:
        self.sums, self.counts, self.steps, self.images = {}, {}, 0, 0
        self.restart_clock()

    def restart_clock(self) -> None:
        self._t0 = time.perf_counter()

    def state(self) -> dict:
        return {
            "sums": {k: float(v) for k, v in self.sums.items()},
            "counts": dict(self.counts),
            "steps": self.steps,
        }

    def load_state(self, state: dict) -> None:
        self.sums = {k: float(v) for k, v in (state.get("sums") or {}).items()}
        self.counts = {k: int(v) for k, v in (state.get("counts") or {}).items()}
        self.steps = int(state.get("steps") or 0)


class CsvLog:
    """An append-only CSV whose header is fixed by its first row (or read from the file); `truncate(step)` drops
    rows after a resumed step so a resumed run never writes a step twice."""

    def __init__(self, path: Path, first_columns: tuple[str, ...]):
        self.path = path
        self.first_columns = first_columns
        self.header: list[str] | None = None
        self._warned = False

    def _read(self) -> tuple[list[str] | None, list[list[str]]]:
        if not self.path.is_file():
            return None, []
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return None, []
        return rows[0], rows[1:]

    def truncate(self, last_step: int) -> None:
        header, rows = self._read()
        if header is None or "step" not in header:
            if self.path.exists():
                self.path.unlink()
            self.header = None
            return
        col = header.index("step")
        kept = [r for r in rows if len(r) == len(header) and r[col].isdigit() and int(r[col]) <= last_step]
        if not kept:
            self.path.unlink()
            self.header = None
            return
        self.header = header
        if len(kept) != len(rows):
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(kept)
            atomic_write_text(self.path, buf.getvalue())

    def append(self, row: Mapping[str, Any]) -> None:
        new = self.header is None
        if new:
            rest = sorted(k for k in row if k not in self.first_columns)
            self.header = [c for c in self.first_columns if c in row] + rest
            self.path.parent.mkdir(parents=True, exist_ok=True)
        extra = set(row) - set(self.header)
        if extra and not self._warned:
            warnings.warn(
                f"{self.path}: columns {sorted(extra)} are not in the header and are not written", stacklevel=3
            )
            self._warned = True
        with open(self.path, "a", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            if new:
                writer.writerow(self.header)
            writer.writerow([fmt_cell(row.get(c, "")) for c in self.header])
            f.flush()
            os.fsync(f.fileno())


def fmt_cell(value) -> str:
    if isinstance(value, bool) or isinstance(value, int) or isinstance(value, str):
        return str(value)
    if value is None:
        return ""
    return f"{float(value):.9g}"
