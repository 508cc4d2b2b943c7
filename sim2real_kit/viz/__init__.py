"""Every figure and interactive view of the notebooks (DESIGN §3, §6): matplotlib figures of depth,
residuals, sensor effects, flagged patches, training curves and benchmark bars; plotly 3D views of
point clouds, discriminator patches (paper Sec. 3.3, Fig. 3) and fused meshes (Sec. 4); plotly
explorers of a dataset's frames and of the discriminator's flags (frame slider, threshold buttons) that
keep working in the executed notebooks' static HTML.

Modules: `figures` (matplotlib figures, `save_figure`), `curves` (training / validation curves from
the Trainer's CSV files), `plot3d` (plotly 3D views, `notebook_setup`), `widgets` (the frame browser) and
`explorer` (the patch explorer) — plotly explorers with every frame's data embedded in the figure — and
`_common` (private: colours, input handling, shared scales). Everything public is re-exported here: use `from sim2real_kit import viz; viz.depth_panels(...)`.

Conventions (shared by every function):
- depth maps are float metres [H, W] (0 = invalid), numpy arrays or torch tensors; stacks are [F, H, W]
  (or [F, 1, H, W]). Depth is drawn with a sequential colormap ("turbo", invalid pixels black) on one
  shared, robust (1st-99th percentile) scale per figure.
- residuals are drawn in millimetres with a diverging colormap ("RdBu_r"), limits symmetric at the
  98th percentile of |residual|, computed only where both maps are valid (elsewhere grey).
  `depth_panels` and `sample_grid` show depth − CAD (red: farther than the CAD); `residual_histograms`
  shows CAD − depth, the residual of the metrics (`metrics.residuals`) and of the release.
- matplotlib functions return a `matplotlib.figure.Figure` that pyplot does not keep (made, then
  closed at once): it is shown exactly once in Jupyter (as a cell's last expression or with
  `display(fig)`), never a second time at the end of the cell, and is freed with its last reference
  (no `plt.close` needed). `save_sample_grid` uses no pyplot at all (safe in training loops). Save
  with `fig.savefig(path)` or `save_figure` (atomic). plotly functions return `plotly.graph_objects.Figure`;
  the explorers too (a frame slider and buttons in `layout.sliders` / `layout.updatemenus`, no kernel needed;
  what they show is listed in `layout.meta`).

matplotlib and plotly are imported inside the functions: `import sim2real_kit.viz` is light.
"""

from __future__ import annotations

from sim2real_kit.viz._common import (
    DEPTH_CMAP,
    DEPTH_PERCENTILES,
    EFFECT_COLOR,
    FLAG_COLOR,
    INVALID_DEPTH_COLOR,
    INVALID_RESIDUAL_COLOR,
    PALETTE,
    PANEL_IN,
    RESIDUAL_CMAP,
    RESIDUAL_PERCENTILE,
    SELECTED_COLOR,
    TRACE_COLORS,
)
from sim2real_kit.viz.curves import loss_curve, val_curve
from sim2real_kit.viz.explorer import patch_explorer
from sim2real_kit.viz.figures import (
    ablation_plot,
    depth_panels,
    effects_gallery,
    flag_overlay,
    hole_maps,
    metric_bars,
    residual_histograms,
    sample_grid,
    save_figure,
    save_sample_grid,
)
from sim2real_kit.viz.plot3d import frame_point_clouds, mesh_figure, notebook_setup, patch_figure, point_cloud_figure
from sim2real_kit.viz.widgets import frame_browser

__all__ = [
    # figures, curves, 3D views and explorers
    "ablation_plot",
    "depth_panels",
    "effects_gallery",
    "flag_overlay",
    "frame_browser",
    "frame_point_clouds",
    "hole_maps",
    "loss_curve",
    "mesh_figure",
    "metric_bars",
    "notebook_setup",
    "patch_explorer",
    "patch_figure",
    "point_cloud_figure",
    "residual_histograms",
    "sample_grid",
    "save_figure",
    "save_sample_grid",
    "val_curve",
    # colour conventions
    "DEPTH_CMAP",
    "DEPTH_PERCENTILES",
    "EFFECT_COLOR",
    "FLAG_COLOR",
    "INVALID_DEPTH_COLOR",
    "INVALID_RESIDUAL_COLOR",
    "PALETTE",
    "PANEL_IN",
    "RESIDUAL_CMAP",
    "RESIDUAL_PERCENTILE",
    "SELECTED_COLOR",
    "TRACE_COLORS",
]
