"""The plotly 3D views (DESIGN §6): point clouds of a frame's CAD / real / generated depth, one
discriminator patch's points (paper Sec. 3.3, Fig. 3) and fused meshes (paper Sec. 4), plus
`notebook_setup`, which makes these figures render offline in executed notebooks.

Every function returns a `plotly.graph_objects.Figure` (one toggleable trace per named input, equal
aspect); plotly is imported inside the functions.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from sim2real_kit.errors import ConfigError, Sim2RealError
from sim2real_kit.viz._common import PALETTE, TRACE_COLORS, _depth_map, _np

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

    from sim2real_kit.camera import Camera


# ====================================================================== point clouds
def _points(x, name: str) -> np.ndarray:
    pts = _np(x, np.float64)
    if pts.ndim >= 2 and pts.shape[-1] == 3:
        pts = pts.reshape(-1, 3)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise Sim2RealError(f"{name} must be points [N, 3], got shape {pts.shape}")
    keep = np.isfinite(pts).all(1) & (np.abs(pts).sum(1) > 0)  # zeros: padding of skipped patches
    return pts[keep]


def _trace_color(name: str, i: int, colors: Mapping[str, str] | None) -> str:
    if colors and name in colors:
        return colors[name]
    return TRACE_COLORS.get(name, PALETTE[i % len(PALETTE)])


def _scene_layout(view: str, axis_unit: str = "m") -> dict:
    if view == "camera":  # camera frame: x right, y down, z forward; look forward from behind the camera
        camera = {"up": {"x": 0, "y": -1, "z": 0}, "eye": {"x": 0.0, "y": -0.6, "z": -1.9}}
    elif view == "world":  # world frame: z up
        camera = {"up": {"x": 0, "y": 0, "z": 1}, "eye": {"x": 1.3, "y": -1.3, "z": 0.9}}
    else:
        raise ConfigError(f"view must be 'camera' or 'world', got {view!r}")
    return {
        "aspectmode": "data",
        "camera": camera,
        "xaxis": {"title": f"x [{axis_unit}]"},
        "yaxis": {"title": f"y [{axis_unit}]"},
        "zaxis": {"title": f"z [{axis_unit}]"},
    }


def point_cloud_figure(
    clouds: Mapping[str, Any],
    max_points: int = 20000,
    colors: Mapping[str, str] | None = None,
    size: float = 1.5,
    title: str | None = None,
    seed: int = 0,
    *,
    view: str = "camera",
    opacity: float = 0.8,
) -> go.Figure:
    """Plotly 3D view: one Scatter3d trace per named cloud [N, 3] (or [H, W, 3]), toggleable in the
    legend, each randomly subsampled (seeded) to at most `max_points`; non-finite and all-zero
    points are dropped. `view` "camera" (x right, y down, z forward: looks like the image) or
    "world" (z up). Equal aspect (`scene.aspectmode = "data"`)."""
    import plotly.graph_objects as go

    if int(max_points) < 1:
        raise ConfigError(f"max_points must be >= 1, got {max_points!r}")
    rng = np.random.default_rng(seed)
    fig = go.Figure()
    for i, (name, cloud) in enumerate(clouds.items()):
        if cloud is None:
            continue
        pts = _points(cloud, f"clouds[{name!r}]")
        n_all = len(pts)
        if n_all > max_points:
            pts = pts[np.sort(rng.choice(n_all, int(max_points), replace=False))]
        fig.add_trace(
            go.Scatter3d(
                x=pts[:, 0],
                y=pts[:, 1],
                z=pts[:, 2],
                mode="markers",
                name=str(name),
                marker={"size": size, "color": _trace_color(name, i, colors), "opacity": opacity},
                hovertemplate=f"{name}<br>x %{{x:.3f}}<br>y %{{y:.3f}}<br>z %{{z:.3f}}<extra>{n_all} pts</extra>",
            )
        )
    fig.update_layout(
        title=title,
        scene=_scene_layout(view),
        legend={"itemsizing": "constant"},
        margin={"l": 0, "r": 0, "t": 40 if title else 10, "b": 0},
        height=520,
    )
    return fig


def frame_point_clouds(cad, real, camera: Camera, sim=None, pose=None, **kwargs) -> go.Figure:
    """Back-project the valid pixels of the CAD, real and (optional) generated depth [H, W] of one
    frame with `camera` (camera frame, or world frame with the 4x4 camera-to-world `pose`) and show
    them with `point_cloud_figure` as "CAD", "real", "generated"."""
    clouds = {}
    for name, depth in (("CAD", cad), ("real", real), ("generated", sim)):
        if depth is None:
            continue
        d = _depth_map(depth, name)
        pts = camera.backproject(d, None if pose is None else _np(pose, np.float64))
        clouds[name] = pts[d > 0]
    kwargs.setdefault("view", "camera" if pose is None else "world")
    return point_cloud_figure(clouds, **kwargs)


# ====================================================================== one discriminator patch (Sec. 3.3, Fig. 3)
def patch_figure(points, real_points, cad_points, title: str | None = None, *, size: float = 3.0) -> go.Figure:
    """One discriminator patch in 3D: generated (orange), real (blue) and CAD (grey) points [N, 3]
    (camera-frame metres from `PatchPoints.camera_points()`, or normalised points), legend-toggleable.
    Any of the three may be None."""
    clouds = {"generated": points, "real": real_points, "CAD": cad_points}
    return point_cloud_figure(clouds, max_points=100_000, size=size, title=title, view="camera", opacity=0.9)


# ====================================================================== fused meshes (Sec. 4)
def _mesh_arrays(mesh, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(vertices [V, 3], triangles [T, 3], vertex colours [V, 3] or None) of a (V, T) pair, an open3d
    TriangleMesh, a trimesh-like object (.vertices/.faces) or a dict."""
    colors = None
    if isinstance(mesh, Mapping):
        vertices, triangles = mesh.get("vertices"), mesh.get("triangles", mesh.get("faces"))
    elif isinstance(mesh, (tuple, list)) and len(mesh) == 2:
        vertices, triangles = mesh
    elif hasattr(mesh, "vertices") and hasattr(mesh, "triangles"):  # open3d
        vertices, triangles = mesh.vertices, mesh.triangles
        if hasattr(mesh, "has_vertex_colors") and mesh.has_vertex_colors():
            colors = np.asarray(mesh.vertex_colors, np.float64)
    elif hasattr(mesh, "vertices") and hasattr(mesh, "faces"):
        vertices, triangles = mesh.vertices, mesh.faces
    else:
        raise Sim2RealError(f"meshes[{name!r}] must be (vertices, triangles), an open3d mesh or a dict")
    v = _np(vertices, np.float64)
    t = _np(triangles)
    if v.ndim != 2 or v.shape[1] != 3 or t.ndim != 2 or t.shape[1] != 3:
        raise Sim2RealError(f"meshes[{name!r}]: vertices must be [V, 3] and triangles [T, 3], got {v.shape}, {t.shape}")
    t = t.astype(np.int64)
    if t.size and (t.min() < 0 or t.max() >= len(v)):
        raise Sim2RealError(f"meshes[{name!r}]: triangle indices outside [0, {len(v)})")
    return v, t, colors


def mesh_figure(
    meshes: Mapping[str, Any],
    max_triangles: int = 50000,
    offsets: bool = True,
    *,
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
    seed: int = 0,
) -> go.Figure:
    """Plotly Mesh3d traces, one per named mesh (toggleable), placed side by side along x (each shifted
    by the previous bounding-box widths + a 10 % gap) when `offsets`. Meshes with more than
    `max_triangles` triangles are decimated by a seeded random subset of triangles (for display only).
    World frame, z up, equal aspect."""
    import plotly.graph_objects as go

    rng = np.random.default_rng(seed)
    prepared = []
    for name, mesh in meshes.items():
        v, t, vc = _mesh_arrays(mesh, name)
        if len(t) > max_triangles:
            t = t[np.sort(rng.choice(len(t), int(max_triangles), replace=False))]
        used, inverse = np.unique(t.ravel(), return_inverse=True)  # drop vertices no kept triangle uses
        v, t = v[used], inverse.reshape(-1, 3)
        vc = None if vc is None else vc[used]
        prepared.append((name, v, t, vc))
    widths = [float(np.ptp(v[:, 0])) if len(v) else 0.0 for _, v, _, _ in prepared]
    gap = 0.1 * max(widths + [1e-9])
    fig = go.Figure()
    x_at = 0.0
    for i, (name, v, t, vc) in enumerate(prepared):
        if offsets and len(v):
            v = v + np.array([x_at - v[:, 0].min(), 0.0, 0.0])
            x_at += widths[i] + gap
        kwargs: dict[str, Any] = {"color": _trace_color(name, i, colors)}
        if vc is not None:
            kwargs = {"vertexcolor": [f"rgb({r:.0f},{g:.0f},{b_:.0f})" for r, g, b_ in 255 * np.clip(vc, 0, 1)]}
        fig.add_trace(
            go.Mesh3d(
                x=v[:, 0],
                y=v[:, 1],
                z=v[:, 2],
                i=t[:, 0],
                j=t[:, 1],
                k=t[:, 2],
                name=str(name),
                showlegend=True,
                flatshading=True,
                lighting={"ambient": 0.45, "diffuse": 0.8, "specular": 0.1},
                **kwargs,
            )
        )
    fig.update_layout(
        title=title, scene=_scene_layout("world"), margin={"l": 0, "r": 0, "t": 40 if title else 10, "b": 0}, height=520
    )
    return fig


# ====================================================================== notebooks
def notebook_setup(offline_html: bool = True) -> None:
    """Call once at the top of a notebook: plotly figures render both in JupyterLab (mimetype) and in
    the executed notebook's static HTML (the runner's `notebooks/NN_name.html`, nbconvert picks each
    output's text/html) with plotly.js embedded once (inline, no CDN: the "notebook" renderer puts the
    library in the output of the notebook's first plotly figure), so the 3D views and the explorers
    (`frame_browser`, `patch_explorer`: plotly figures with their data embedded) work offline. plotly is not
    imported here (~1 s): where it is not yet, PLOTLY_RENDERER tells plotly.io the default when it loads."""
    renderer = "plotly_mimetype+notebook" if offline_html else "plotly_mimetype"
    if "plotly.io._renderers" in sys.modules:
        sys.modules["plotly.io"].renderers.default = renderer
    else:
        os.environ["PLOTLY_RENDERER"] = renderer
