"""The `Sim2RealError` family: every bad input the kit refuses names the file or key and the problem."""

from __future__ import annotations

from pathlib import Path


class Sim2RealError(Exception):
    """Base class of every error the kit raises on purpose (bad input, missing artifact)."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class DepthFormatError(Sim2RealError):
    """A depth PNG or array is not what the kit expects (dtype, channels, NaN, negative, truncated)."""


class LayoutError(Sim2RealError):
    """The `lasa_depth` / `lasa_pose` layout is missing files, lists or has inconsistent frames."""


class PoseError(Sim2RealError):
    """A pose file is not a 4x4 rigid camera-to-world matrix."""


class ConfigError(Sim2RealError):
    """Unknown config key, wrong type or value out of range."""


class CheckpointError(Sim2RealError):
    """A checkpoint or pretrained folder is missing, truncated or from another model shape."""


class MissingArtifactError(Sim2RealError):
    """A run folder lacks what a step needs; the message names the command that makes it."""
