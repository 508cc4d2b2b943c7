"""sim2real_kit: an interactive, notebook-centric kit implementing Stable-Sim2Real (ICCV 2025),
a two-stage depth diffusion model that turns clean CAD depth into realistic captured depth.

Imports stay light: heavy modules (torch models, open3d rendering) load on first attribute use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "Camera": "sim2real_kit.camera",
    "Config": "sim2real_kit.config",
    "load_config": "sim2real_kit.config",
    "Sim2RealError": "sim2real_kit.errors",
    "PairedDepthDataset": "sim2real_kit.data.dataset",
    "DepthLayout": "sim2real_kit.data.layout",
    "validate": "sim2real_kit.data.layout",
    "Trainer": "sim2real_kit.training",
    "Sim2RealPipeline": "sim2real_kit.pipeline",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sim2real_kit' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
