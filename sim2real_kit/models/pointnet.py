"""PointNet's building block (Qi et al. 2017, without the T-nets), shared by the 3D-aware discriminator
(`models.discriminator`) and the downstream networks (`downstream.networks`).

A PointNet applies one MLP to every point: per width, Linear + normalisation + ReLU on per-point features
[B, N, C]; then a symmetric max-pool over the points gives one feature per cloud [B, C].

- `point_norm(norm, x)`: a norm module applied to per-point features: BatchNorm1d over all points of the batch
  (PointNet's Conv1d + BatchNorm1d), any other norm (LayerNorm) per point.
- `norm_layer(channels, kind)`: the norm module of a kind in `NORMS` ("batch" | "layer").
- `PointNorm`: a module doing `point_norm` with its own norm (state_dict keys `norm.*`).
- `point_mlp(in_dim, widths, norm, input_norm)`: the per-point MLP as an `nn.Sequential`
  [PointNorm (input standardisation)], (Linear, PointNorm, ReLU) per width: the discriminator's layout.
- `SharedMLP(in_dim, widths, norm)`: the same MLP with the layout `linears.<i>` / `norms.<i>` (plain norm
  modules): the downstream networks' layout.
- `max_pool(features)`: [B, N, C] -> [B, C].

The two layouts compute the same thing, with the same random initialisation for a seed (the Linears are created
in the same order; the norms draw no random numbers); they differ only in their state_dict keys, which saved
discriminator checkpoints fix.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

NORMS = ("batch", "layer")  # normalisation of the per-point features


def norm_layer(channels: int, kind: str = "batch", affine: bool = True) -> nn.Module:
    """BatchNorm1d(channels, affine) for kind "batch", LayerNorm(channels) (always affine) for "layer"."""
    return nn.BatchNorm1d(channels, affine=affine) if kind == "batch" else nn.LayerNorm(channels)


def point_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`norm` applied to per-point features x [..., C]: a BatchNorm1d normalises over all points of the batch
    (flattened to [-1, C]), other norms (LayerNorm) act on each point's last dimension."""
    if isinstance(norm, nn.BatchNorm1d):
        return norm(x.reshape(-1, x.shape[-1])).reshape(x.shape)
    return norm(x)


class PointNorm(nn.Module):
    """Normalisation of per-point features [B, N, C] (`point_norm` with `norm_layer(channels, kind, affine)`)."""

    def __init__(self, channels: int, kind: str = "batch", affine: bool = True):
        super().__init__()
        self.kind = kind
        self.norm = norm_layer(channels, kind, affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return point_norm(self.norm, x)


def point_mlp(in_dim: int, widths: Sequence[int], norm: str = "batch", input_norm: bool = False) -> nn.Sequential:
    """The shared per-point MLP as `nn.Sequential`: (Linear, PointNorm(norm), ReLU) per width, [B, N, in_dim] ->
    [B, N, widths[-1]]; input_norm: first a per-channel standardisation of the input (BatchNorm without affine).
    The ReLUs are not in place: `point_norm`'s output is a view (reshape back to [B, N, C]), and an in-place op on a
    view makes autograd copy the whole feature map twice in backward (CopySlices); ~12 % of a CPU training step."""
    layers: list[nn.Module] = [PointNorm(in_dim, "batch", affine=False)] if input_norm else []
    for w in widths:
        layers += [nn.Linear(in_dim, w), PointNorm(w, norm), nn.ReLU()]
        in_dim = w
    return nn.Sequential(*layers)


class SharedMLP(nn.Module):
    """PointNet's shared per-point MLP: Linear + norm (BatchNorm over all points of the batch, or LayerNorm) +
    ReLU per width, [B, N, C] -> [B, N, widths[-1]]; modules in `linears` / `norms`."""

    def __init__(self, in_dim: int, widths: Sequence[int], norm: str = "batch"):
        super().__init__()
        self.linears = nn.ModuleList()
        self.norms = nn.ModuleList()
        for w in widths:
            self.linears.append(nn.Linear(in_dim, w))
            self.norms.append(norm_layer(w, norm))
            in_dim = w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for linear, norm in zip(self.linears, self.norms):
            x = F.relu(point_norm(norm, linear(x)))
        return x


def max_pool(features: torch.Tensor) -> torch.Tensor:
    """The symmetric function of PointNet: per-point features [B, N, C] -> [B, C] (max over the points).
    `max` rather than `amax`: its backward scatters the gradient to the argmax (amax's compares every feature with
    the max and divides among ties, ~12 % of a CPU training step); the parameter gradients are the same, since tied
    features are duplicated points (the same input) or ReLU zeros (no gradient). benchmarks/bench_disc_step.py."""
    return features.max(dim=1).values


__all__ = ["NORMS", "PointNorm", "SharedMLP", "max_pool", "norm_layer", "point_mlp", "point_norm"]
