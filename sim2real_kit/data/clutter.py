"""Small things on the surfaces of the procedural furniture (real geometry only): cups, books, bowls,
bottles and boxes on table tops and boards (`clutter`), and rows of books on shelf boards (`book_row`).

Every size and position is drawn from the generator passed in, in a fixed order: the draws are part
of the seeded object (`shapes.make_object`)."""

from __future__ import annotations

import math

import numpy as np

from sim2real_kit.data.primitives import MeshBuilder


def clutter(
    b: MeshBuilder, rng: np.random.Generator, x0, x1, y0, y1, z: float, max_items: int = 4, max_height: float = 0.3
) -> int:
    """Small objects (cups, books, bowls, bottles, boxes) standing on the rectangle [x0,x1]x[y0,y1] at z."""
    n = int(rng.integers(1, max_items + 1))
    placed: list[tuple[float, float, float]] = []
    for _ in range(4 * n):
        if len(placed) >= n:
            break
        kind = rng.choice(["cup", "book", "bowl", "bottle", "box", "books"])
        r = {"cup": 0.045, "book": 0.13, "bowl": 0.09, "bottle": 0.04, "box": 0.1, "books": 0.12}[kind]
        if x1 - x0 < 2 * r or y1 - y0 < 2 * r:
            continue
        cx, cy = rng.uniform(x0 + r, x1 - r), rng.uniform(y0 + r, y1 - r)
        if any(math.hypot(cx - px, cy - py) < r + pr + 0.01 for px, py, pr in placed):
            continue
        placed.append((cx, cy, r))
        yaw = rng.uniform(0, np.pi)
        if kind == "cup":
            b.cylinder([cx, cy, z], 0.04, min(0.1, max_height), radius_top=0.045, segments=10)
        elif kind == "bottle":
            h = min(rng.uniform(0.2, 0.32), max_height)
            b.cylinder([cx, cy, z], 0.035, 0.65 * h, segments=10)
            b.cylinder([cx, cy, z + 0.65 * h], 0.035, 0.35 * h, radius_top=0.012, segments=10)
        elif kind == "bowl":
            b.cylinder([cx, cy, z], 0.04, min(0.07, max_height), radius_top=0.09, segments=12)
        elif kind == "book":
            t = rng.uniform(0.02, 0.05)
            b.box([cx, cy, z + t / 2], [0.22, 0.16, t], yaw=yaw)
        elif kind == "books":
            h = 0.0
            for _k in range(int(rng.integers(2, 5))):
                t = rng.uniform(0.02, 0.045)
                b.box(
                    [cx, cy, z + h + t / 2],
                    [rng.uniform(0.16, 0.24), rng.uniform(0.12, 0.17), t],
                    yaw=yaw + rng.normal(0, 0.15),
                )
                h += t
        else:
            s = rng.uniform(0.06, 0.14, size=3)
            s[2] = min(s[2], max_height)
            b.box([cx, cy, z + s[2] / 2], s, yaw=yaw)
    return len(placed)


def book_row(
    b: MeshBuilder, rng: np.random.Generator, x0: float, x1: float, y_back: float, depth: float, z: float, max_h: float
) -> None:
    """A row of upright (and a few leaning) books filling part of a shelf board."""
    x = x0 + rng.uniform(0, 0.1)
    end = x0 + (x1 - x0) * rng.uniform(0.4, 1.0)
    while x < end:
        t = rng.uniform(0.015, 0.045)
        h = min(rng.uniform(0.15, 0.3), max_h - 0.01)
        d = min(rng.uniform(0.12, 0.22), depth - 0.01)
        if h <= 0.05 or x + t > x1:
            break
        lean = rng.normal(0, 0.04) if rng.random() < 0.15 else 0.0
        b.box([x + t / 2, y_back - d / 2, z + h / 2], [t, d, h], tilt=(0.0, lean))
        x += t + (rng.uniform(0.0, 0.004) if rng.random() < 0.9 else rng.uniform(0.05, 0.15))


__all__ = ["book_row", "clutter"]
