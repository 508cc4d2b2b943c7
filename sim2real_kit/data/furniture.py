"""The six furniture categories of the procedural world, each built as a CAD and a real geometry.

One function per category (`BUILDERS`) draws the object's parameters through a `Draw` (every draw
is recorded in `params`) and returns two `MeshBuilder`s in the object frame (see `shapes.py`):
the CAD geometry (boxy, simplified) and the real one (bevels, thin legs and rods, cushions,
handles, clutter). The order of the draws is part of the seeded object: a parameter drawn in
another order gives another object for the same seed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from sim2real_kit.data.clutter import book_row, clutter
from sim2real_kit.data.primitives import MeshBuilder

if TYPE_CHECKING:
    from sim2real_kit.data.shapes import ShapeConfig


class Draw:
    """Seeded parameter draws that are recorded in `params`."""

    def __init__(self, rng: np.random.Generator, cfg: ShapeConfig):
        self.rng, self.cfg, self.params = rng, cfg, {}

    def size(self, name: str, lo: float, hi: float) -> float:
        v = float(self.rng.uniform(lo, hi)) * self.cfg.size_scale
        self.params[name] = round(v, 5)
        return v

    def uniform(self, name: str, lo: float, hi: float) -> float:
        v = float(self.rng.uniform(lo, hi))
        self.params[name] = round(v, 5)
        return v

    def choice(self, name: str, options):
        v = options[int(self.rng.integers(len(options)))]
        self.params[name] = v
        return v

    def integer(self, name: str, lo: int, hi: int) -> int:
        v = int(self.rng.integers(lo, hi + 1))
        self.params[name] = v
        return v

    def flag(self, name: str, p: float) -> bool:
        v = bool(self.rng.random() < p)
        self.params[name] = v
        return v

    def parts(self, name: str, p: float) -> tuple[bool, bool]:
        """An optional part: (in CAD, in real). Usually both or neither; sometimes only one."""
        present = bool(self.rng.random() < p)
        cad = real = present
        if self.rng.random() < self.cfg.part_mismatch_prob:
            if self.rng.random() < 0.5:
                cad = not cad
            else:
                real = not real
        self.params[f"{name}_cad"], self.params[f"{name}_real"] = cad, real
        return cad, real


def _chair(d: Draw, cfg: ShapeConfig, rng: np.random.Generator) -> tuple[MeshBuilder, MeshBuilder]:
    w, dep = d.size("width", 0.40, 0.56), d.size("depth", 0.42, 0.56)
    seat_h, seat_t = d.size("seat_height", 0.42, 0.50), d.size("seat_thickness", 0.03, 0.07)
    back_h, back_t = d.size("back_height", 0.32, 0.55), d.size("back_thickness", 0.025, 0.05)
    legs = d.choice("legs", ("four_square", "four_round", "pedestal"))
    leg_w = d.size("leg_width", 0.03, 0.05)
    back_style = d.choice("back", ("solid", "slats", "frame"))
    arms_cad, arms_real = d.parts("arms", 0.3)
    stretchers = d.flag("stretchers", 0.4) and legs != "pedestal"
    cushion = d.flag("cushion", 0.4)
    splay = math.radians(d.uniform("leg_splay_deg", 0.0, 5.0))
    bevel, seg = cfg.bevel_m, cfg.bevel_segments
    seat_top = seat_h
    cad, real = MeshBuilder(), MeshBuilder()

    # CAD: seat slab, full back slab, boxy legs or a column on a flat base
    cad.box([0, 0, seat_top - seat_t / 2], [w, dep, seat_t])
    cad.box([0, dep / 2 - back_t / 2, seat_top + back_h / 2], [w, back_t, back_h])
    leg_h = seat_top - seat_t
    inset = leg_w / 2 + 0.01
    corners = [(sx * (w / 2 - inset), sy * (dep / 2 - inset)) for sx in (-1, 1) for sy in (-1, 1)]
    if legs == "pedestal":
        cad.box([0, 0, leg_h / 2], [0.07, 0.07, leg_h])
        cad.box([0, 0, 0.03], [0.6 * w + 0.1, 0.6 * w + 0.1, 0.06])
    else:
        for x, y in corners:
            cad.box([x, y, leg_h / 2], [max(leg_w, 0.04), max(leg_w, 0.04), leg_h])
    arm_h = d.size("arm_height", 0.18, 0.25)
    if arms_cad:
        for sx in (-1, 1):
            cad.box([sx * (w / 2 - 0.03), 0, seat_top + arm_h / 2], [0.06, dep * 0.8, arm_h])

    # real: bevelled seat (maybe with a cushion), detailed back, thin legs, stretchers, arm rods
    real.rounded_box([0, 0, seat_top - seat_t / 2 - 0.01], [w, dep, seat_t], bevel, seg)
    if cushion:
        real.rounded_box([0, -0.01, seat_top + 0.005], [w - 0.03, dep - 0.05, 0.05], 0.02, seg)
    _chair_back(real, rng, back_style, w, dep / 2 - back_t / 2, back_t, back_h, seat_top, bevel, seg)
    if legs == "pedestal":
        _chair_pedestal(real, rng, w, leg_h, seg)
    else:
        _chair_legs(real, rng, legs, corners, leg_w, leg_h, splay)
        if stretchers:
            z = 0.15
            for sx in (-1, 1):
                real.rod(
                    [sx * (w / 2 - inset), -(dep / 2 - inset), z], [sx * (w / 2 - inset), dep / 2 - inset, z], 0.008
                )
            real.rod([-(w / 2 - inset), 0, z + 0.03], [w / 2 - inset, 0, z + 0.03], 0.008)
    if arms_real:
        for sx in (-1, 1):
            x = sx * (w / 2 - 0.02)
            real.rod([x, -dep * 0.3, seat_top], [x, -dep * 0.3, seat_top + arm_h], 0.012)
            real.rounded_box([x, 0, seat_top + arm_h], [0.05, dep * 0.8, 0.025], 0.01, seg)
    return cad, real


def _chair_back(
    real: MeshBuilder,
    rng: np.random.Generator,
    style: str,
    w: float,
    by: float,
    back_t: float,
    back_h: float,
    seat_top: float,
    bevel: float,
    seg: int,
) -> None:
    """The real back of a chair at y = `by`: a solid bevelled slab, or two posts and a top rail with
    slats (their number drawn from `rng`) or a lower rail only (a frame back, open in the middle)."""
    if style == "solid":
        real.rounded_box([0, by, seat_top + back_h / 2], [w, back_t, back_h], bevel, seg, tilt=(-0.06, 0))
        return
    post = 0.025
    for sx in (-1, 1):
        real.box([sx * (w / 2 - post / 2), by, seat_top + back_h / 2], [post, back_t, back_h])
    rail = min(0.08, back_h * 0.25)
    real.rounded_box([0, by, seat_top + back_h - rail / 2], [w, back_t, rail], bevel * 0.5, seg)
    if style == "slats":
        n = int(rng.integers(2, 6))
        for i in range(n):
            x = -w / 2 + post + (i + 0.5) * (w - 2 * post) / n
            real.box([x, by, seat_top + (back_h - rail) / 2], [0.012, back_t * 0.6, back_h - rail])
    else:  # a frame back: a lower rail only, the middle is open
        real.box([0, by, seat_top + 0.06], [w - 2 * post, back_t * 0.7, 0.03])


def _chair_pedestal(real: MeshBuilder, rng: np.random.Generator, w: float, leg_h: float, seg: int) -> None:
    """A real office-chair base: a column on five rods (directions jittered by `rng`) ending in castors."""
    real.cylinder([0, 0, 0.06], 0.025, leg_h - 0.06, segments=10)
    for k in range(5):
        a = 2 * np.pi * k / 5 + rng.uniform(0, 0.3)
        tip = np.array([math.cos(a), math.sin(a)]) * (0.3 * w + 0.05)
        real.rod([0, 0, 0.06], [tip[0], tip[1], 0.045], 0.015)
        real.rounded_box([tip[0], tip[1], 0.022], [0.045, 0.045, 0.045], 0.02, seg)


def _chair_legs(
    real: MeshBuilder,
    rng: np.random.Generator,
    legs: str,
    corners: list[tuple[float, float]],
    leg_w: float,
    leg_h: float,
    splay: float,
) -> None:
    """Four thin real legs (round and tapered, or square), splayed outwards by `splay` rad; their
    radius is drawn from `rng`."""
    r = leg_w * rng.uniform(0.3, 0.45)
    for x, y in corners:
        tilt = (-splay * np.sign(y), splay * np.sign(x))
        base = [x + math.sin(splay) * leg_h * np.sign(x), y + math.sin(splay) * leg_h * np.sign(y), 0.0]
        if legs == "four_round":
            real.cylinder(base, r * 0.8, leg_h, radius_top=r, segments=8, tilt=tilt)
        else:
            real.box([base[0], base[1], leg_h / 2], [2 * r, 2 * r, leg_h], tilt=tilt)


def _table(d: Draw, cfg: ShapeConfig, rng: np.random.Generator) -> tuple[MeshBuilder, MeshBuilder]:
    shape = d.choice("top_shape", ("rect", "rect", "round"))
    w = d.size("width", 0.8, 1.8) if shape == "rect" else d.size("width", 0.7, 1.2)
    dep = d.size("depth", 0.6, 1.0) if shape == "rect" else w
    h, top_t = d.size("height", 0.70, 0.78), d.size("top_thickness", 0.025, 0.05)
    legs = d.choice("legs", ("four", "four", "pedestal", "trestle"))
    leg_w = d.size("leg_width", 0.04, 0.08)
    apron = d.flag("apron", 0.6) and legs == "four" and shape == "rect"
    shelf_cad, shelf_real = d.parts("lower_shelf", 0.15)
    bevel, seg = cfg.bevel_m, cfg.bevel_segments
    cad, real = MeshBuilder(), MeshBuilder()
    leg_h = h - top_t
    inset = leg_w / 2 + (0.04 if shape == "rect" else 0.0)
    corners = [(sx * (w / 2 - inset), sy * (dep / 2 - inset)) for sx in (-1, 1) for sy in (-1, 1)]
    if shape == "round":
        corners = [(0.32 * w * math.cos(a), 0.32 * w * math.sin(a)) for a in np.pi / 4 + np.arange(4) * np.pi / 2]

    if shape == "rect":
        cad.box([0, 0, h - top_t / 2], [w, dep, top_t])
        real.rounded_box([0, 0, h - top_t / 2], [w, dep, top_t], min(bevel, top_t * 0.45), seg)
    else:
        cad.cylinder([0, 0, h - top_t], w / 2, top_t, segments=16)
        real.cylinder([0, 0, h - top_t], w / 2, top_t, segments=40)
    if legs == "four":
        for x, y in corners:
            cad.box([x, y, leg_h / 2], [leg_w, leg_w, leg_h])
            real.cylinder([x, y, 0], leg_w * 0.25, leg_h, radius_top=leg_w * 0.45, segments=10)
        if apron:
            t = 0.02
            real.box([0, -(dep / 2 - inset), h - top_t - 0.04], [w - 2 * inset, t, 0.08])
            real.box([0, dep / 2 - inset, h - top_t - 0.04], [w - 2 * inset, t, 0.08])
            real.box([-(w / 2 - inset), 0, h - top_t - 0.04], [t, dep - 2 * inset, 0.08])
            real.box([w / 2 - inset, 0, h - top_t - 0.04], [t, dep - 2 * inset, 0.08])
    elif legs == "pedestal":
        cad.box([0, 0, leg_h / 2], [0.14, 0.14, leg_h])
        cad.box([0, 0, 0.025], [min(w, dep) * 0.6, min(w, dep) * 0.6, 0.05])
        real.cylinder([0, 0, 0], 0.04, leg_h, segments=12)
        for k in range(4):
            a = np.pi / 4 + k * np.pi / 2
            real.rod([0, 0, 0.03], [0.3 * min(w, dep) * math.cos(a), 0.3 * min(w, dep) * math.sin(a), 0.015], 0.015)
    else:  # trestle: two end frames joined by a beam
        for sx in (-1, 1):
            x = sx * (w / 2 - inset)
            cad.box([x, 0, leg_h / 2], [leg_w, dep * 0.8, leg_h])
            real.box([x, 0, leg_h / 2], [leg_w * 0.5, 0.05, leg_h])
            real.box([x, 0, 0.025], [leg_w * 0.6, dep * 0.8, 0.05])
            real.box([x, 0, leg_h - 0.03], [leg_w * 0.6, dep * 0.75, 0.05])
        real.box([0, 0, leg_h * 0.4], [w - 2 * inset, 0.03, 0.06])
    if shelf_cad:
        cad.box([0, 0, 0.2], [w * 0.85, dep * 0.85, 0.03])
    if shelf_real:
        real.box([0, 0, 0.2], [w * 0.85, dep * 0.85, 0.02])
    if rng.random() < cfg.clutter_prob:
        half = 0.45 if shape == "rect" else 0.3
        d.params["clutter_items"] = clutter(real, rng, -w * half, w * half, -dep * half, dep * half, h)
    return cad, real


def _sofa(d: Draw, cfg: ShapeConfig, rng: np.random.Generator) -> tuple[MeshBuilder, MeshBuilder]:
    w, dep = d.size("width", 1.4, 2.4), d.size("depth", 0.8, 1.0)
    seat_h, top = d.size("seat_height", 0.40, 0.48), d.size("back_top", 0.75, 0.95)
    arm_w, arm_h = d.size("arm_width", 0.12, 0.25), d.size("arm_height", 0.55, 0.70)
    back_t = d.size("back_thickness", 0.15, 0.25)
    feet_h = d.size("feet_height", 0.0, 0.12)
    seats = d.integer("seats", 2, 3)
    arms_cad, arms_real = d.parts("arms", 0.9)
    pillows = d.integer("pillows", 0, 2)
    seg = cfg.bevel_segments
    cad, real = MeshBuilder(), MeshBuilder()
    aw_cad = arm_w if arms_cad else 0.0
    aw_real = arm_w if arms_real else 0.0

    # CAD: one block from the floor to the seat, a back block, two arm blocks
    cad.box([0, 0, seat_h / 2], [w, dep, seat_h])
    cad.box([0, dep / 2 - back_t / 2, (seat_h + top) / 2], [w, back_t, top - seat_h])
    if arms_cad:
        for sx in (-1, 1):
            cad.box(
                [sx * (w / 2 - arm_w / 2), -back_t / 2, (seat_h + arm_h) / 2], [arm_w, dep - back_t, arm_h - seat_h]
            )

    # real: frame on feet (the floor shows underneath), seat and back cushions with gaps, round arms
    cush_t = min(0.16, seat_h - feet_h - 0.08)
    frame_top = seat_h - cush_t
    real.rounded_box([0, 0, (feet_h + frame_top) / 2], [w, dep, frame_top - feet_h], 0.03, seg)
    for sx in (-1, 1):
        for sy in (-1, 1):
            real.cylinder([sx * (w / 2 - 0.06), sy * (dep / 2 - 0.06), 0], 0.022, feet_h + 0.01, radius_top=0.03)
    inner = w - 2 * aw_real
    cw = inner / seats
    for i in range(seats):
        x = -inner / 2 + (i + 0.5) * cw
        real.rounded_box(
            [x, -back_t / 2 + 0.01, frame_top + cush_t / 2], [cw - 0.012, dep - back_t - 0.02, cush_t], 0.05, seg
        )
        real.rounded_box(
            [x, dep / 2 - back_t / 2 - 0.02, (seat_h + top) / 2 + 0.02],
            [cw - 0.012, back_t * 0.8, top - seat_h - 0.04],
            0.06,
            seg,
            tilt=(-0.12, 0),
        )
    real.rounded_box([0, dep / 2 - 0.04, (frame_top + top - 0.1) / 2], [w, 0.08, top - 0.1 - frame_top], 0.03, seg)
    if arms_real:
        for sx in (-1, 1):
            real.rounded_box(
                [sx * (w / 2 - arm_w / 2), 0, (feet_h + arm_h) / 2],
                [arm_w, dep, arm_h - feet_h],
                min(0.08, arm_w * 0.45),
                seg,
            )
    for k in range(pillows):
        x = (-1 if k == 0 else 1) * (inner / 2 - 0.25)
        real.rounded_box(
            [x, dep / 2 - back_t - 0.08, seat_h + 0.2],
            [0.4, 0.14, 0.4],
            0.06,
            seg,
            yaw=rng.normal(0, 0.2),
            tilt=(-0.35, rng.normal(0, 0.1)),
        )
    d.params["cad_arm_width"], d.params["real_arm_width"] = aw_cad, aw_real
    return cad, real


def _bed(d: Draw, cfg: ShapeConfig, rng: np.random.Generator) -> tuple[MeshBuilder, MeshBuilder]:
    w, length = d.size("width", 0.9, 1.8), d.size("length", 1.9, 2.1)
    frame_h, mat_t = d.size("frame_height", 0.2, 0.35), d.size("mattress_thickness", 0.18, 0.28)
    head_h = d.size("headboard_height", 0.8, 1.2)
    head_cad, head_real = d.parts("headboard", 0.9)
    foot_cad, foot_real = d.parts("footboard", 0.3)
    legs_h = d.size("leg_height", 0.05, 0.15)
    pillows = d.integer("pillows", 1, 2)
    duvet = d.flag("duvet", 0.7)
    seg = cfg.bevel_segments
    top = frame_h + mat_t
    cad, real = MeshBuilder(), MeshBuilder()
    cad.box([0, 0, top / 2], [w, length, top])
    if head_cad:
        cad.box([0, length / 2 - 0.03, head_h / 2], [w + 0.04, 0.06, head_h])
    if foot_cad:
        cad.box([0, -length / 2 + 0.03, (top + 0.15) / 2], [w + 0.04, 0.06, top + 0.15])

    real.rounded_box([0, 0, (legs_h + frame_h) / 2], [w, length, frame_h - legs_h], cfg.bevel_m, seg)
    for sx in (-1, 1):
        for sy in (-1, 1):
            real.box([sx * (w / 2 - 0.05), sy * (length / 2 - 0.05), legs_h / 2], [0.05, 0.05, legs_h])
    real.rounded_box([0, -0.01, frame_h + mat_t / 2], [w - 0.03, length - 0.04, mat_t], 0.06, seg)
    if duvet:
        cover = rng.uniform(0.6, 0.8) * length
        real.rounded_box([0, -length / 2 + cover / 2 - 0.02, top + 0.02], [w + 0.06, cover, 0.07], 0.04, seg)
        real.rounded_box([0, -length / 2 + cover / 2, top - 0.12], [w + 0.1, cover - 0.06, 0.24], 0.03, seg)
    for k in range(pillows):
        x = 0.0 if pillows == 1 else (k - 0.5) * w / 2
        real.rounded_box(
            [x, length / 2 - 0.3, top + 0.07],
            [min(0.6, w / pillows - 0.05), 0.38, 0.16],
            0.07,
            seg,
            yaw=rng.normal(0, 0.08),
            tilt=(-0.15, 0),
        )
    if head_real:
        real.rounded_box(
            [0, length / 2 - 0.03, (legs_h + head_h) / 2 + 0.02], [w + 0.04, 0.05, head_h - legs_h], 0.02, seg
        )
    if foot_real:
        real.rounded_box([0, -length / 2 + 0.03, (top + 0.15) / 2], [w + 0.04, 0.05, top + 0.15], 0.02, seg)
    return cad, real


def _cabinet(d: Draw, cfg: ShapeConfig, rng: np.random.Generator) -> tuple[MeshBuilder, MeshBuilder]:
    w, dep, h = d.size("width", 0.4, 1.2), d.size("depth", 0.35, 0.6), d.size("height", 0.5, 2.0)
    fronts = d.choice("fronts", ("doors", "drawers", "mixed"))
    n_doors = d.integer("doors", 1, 3)
    plinth = d.size("plinth_height", 0.0, 0.1)
    handle = d.choice("handle", ("bar", "knob", "none"))
    seg = cfg.bevel_segments
    cad, real = MeshBuilder(), MeshBuilder()
    cad.box([0, 0, h / 2], [w, dep, h])

    real.rounded_box([0, 0.005, (plinth + h) / 2], [w, dep - 0.01, h - plinth], min(cfg.bevel_m, 0.006), seg)
    if plinth > 0.005:
        real.box([0, 0.02, plinth / 2], [w - 0.04, dep - 0.06, plinth])
    # fronts: panels 1.5 cm proud of the carcass with 4 mm gaps, each with a handle
    panels = []
    body_h = h - plinth
    if fronts in ("drawers", "mixed"):
        n_draw = int(rng.integers(2, 5)) if fronts == "drawers" else 1
        dh = (body_h * (1.0 if fronts == "drawers" else 0.25)) / n_draw
        for i in range(n_draw):
            panels.append((0.0, w, h - (i + 0.5) * dh, dh, "drawer"))
        body_h -= dh * n_draw
    if fronts in ("doors", "mixed") and body_h > 0.1:
        dw = w / n_doors
        for i in range(n_doors):
            panels.append((-w / 2 + (i + 0.5) * dw, dw, plinth + body_h / 2, body_h, "door"))
    for x, pw, z, ph, kind in panels:
        real.box([x, -dep / 2 - 0.0075, z], [pw - 0.004, 0.015, ph - 0.004])
        if handle == "none":
            continue
        hz = z if kind == "drawer" else z + min(0.3, ph * 0.25)
        hx = x if kind == "drawer" else x + (pw / 2 - 0.06) * (1 if x <= 0 else -1)
        if handle == "bar":
            if kind == "drawer":
                real.rod([hx - 0.06, -dep / 2 - 0.045, hz], [hx + 0.06, -dep / 2 - 0.045, hz], 0.006)
            else:
                real.rod([hx, -dep / 2 - 0.045, hz - 0.07], [hx, -dep / 2 - 0.045, hz + 0.07], 0.006)
            for s in (-0.05, 0.05):
                p = [hx + s, -dep / 2 - 0.015, hz] if kind == "drawer" else [hx, -dep / 2 - 0.015, hz + s]
                real.rod(p, [p[0], -dep / 2 - 0.045, p[2]], 0.004)
        else:
            real.rounded_box([hx, -dep / 2 - 0.03, hz], [0.03, 0.03, 0.03], 0.014, seg)
    if h < 1.3 and rng.random() < cfg.clutter_prob:
        d.params["clutter_items"] = clutter(real, rng, -w * 0.45, w * 0.45, -dep * 0.4, dep * 0.4, h, max_items=3)
    return cad, real


def _shelf(d: Draw, cfg: ShapeConfig, rng: np.random.Generator) -> tuple[MeshBuilder, MeshBuilder]:
    w, dep, h = d.size("width", 0.6, 1.2), d.size("depth", 0.25, 0.4), d.size("height", 0.8, 2.0)
    board = d.size("board_thickness", 0.018, 0.03)
    n = d.integer("shelves", 2, max(2, min(6, int(h / 0.32))))
    back_cad, back_real = d.parts("back_panel", 0.8)
    seg = cfg.bevel_segments
    cad, real = MeshBuilder(), MeshBuilder()
    # CAD: sides, top, bottom and boards at nominal thickness (at least 3 cm), optional back
    t_cad = max(board, 0.03)
    for b, t, bev in ((cad, t_cad, 0.0), (real, board, min(cfg.bevel_m, board * 0.45))):
        add = b.box if bev == 0.0 else (lambda c, s, _b=b, _r=bev: _b.rounded_box(c, s, _r, seg))
        for sx in (-1, 1):
            add([sx * (w / 2 - t / 2), 0, h / 2], [t, dep, h])
        add([0, 0, h - t / 2], [w - 2 * t, dep, t])
        add([0, 0, t / 2 + (0.0 if b is cad else 0.04)], [w - 2 * t, dep, t])
        for i in range(1, n):
            z = i * h / n
            add([0, 0, z], [w - 2 * t, dep - (0.0 if b is cad else 0.02), t])
    if back_cad:
        cad.box([0, dep / 2 - 0.005, h / 2], [w, 0.01, h])
    if back_real:
        real.box([0, dep / 2 - 0.003, h / 2], [w - 0.01, 0.006, h - 0.01])
    # real: books and things on the boards
    filled = 0
    for i in range(n):
        z0 = board + 0.04 if i == 0 else i * h / n + board / 2
        z1 = (i + 1) * h / n - board / 2 - (board if i == n - 1 else 0.0)
        if rng.random() < cfg.clutter_prob:
            filled += 1
            if rng.random() < 0.7:
                book_row(real, rng, -w / 2 + board, w / 2 - board, dep / 2 - 0.01, dep - 0.02, z0, z1 - z0)
            else:
                clutter(
                    real,
                    rng,
                    -w / 2 + board + 0.02,
                    w / 2 - board - 0.02,
                    -dep / 2 + 0.02,
                    dep / 2 - 0.02,
                    z0,
                    max_items=2,
                    max_height=z1 - z0 - 0.02,
                )
    d.params["filled_boards"] = filled
    return cad, real


BUILDERS = {"chair": _chair, "table": _table, "sofa": _sofa, "bed": _bed, "cabinet": _cabinet, "shelf": _shelf}


__all__ = ["BUILDERS", "Draw"]
