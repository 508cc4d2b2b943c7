"""experiments/validity_head.py (issue 20, the holes from a separate head): the hole draw keeps the head's
probabilities as marginal rates, and the offline comparison runs end to end on a mask run's saved samples."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

EXP = Path(__file__).resolve().parents[1] / "experiments"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def vh(monkeypatch):
    monkeypatch.syspath_prepend(str(EXP))
    import validity_head

    yield validity_head
    sys.modules.pop("validity_head", None)


@pytest.mark.parametrize("sigma", [0.0, 1.5])
def test_hole_draw_has_the_heads_probability_as_its_rate(vh, sigma):
    """A pixel is a hole where u > P(valid): its rate is 1 − P(valid) whatever the blob scale; blurred noise
    makes neighbours agree (holes come as blobs), white noise does not."""
    u = vh.correlated_uniform((64, 48, 48), sigma, torch.Generator().manual_seed(0))
    assert 0.0 < float(u.min()) and float(u.max()) < 1.0
    for p in (0.1, 0.5, 0.9):
        assert float((u < p).float().mean()) == pytest.approx(p, abs=0.02)
    a, b = u[:, :, :-1].flatten(), u[:, :, 1:].flatten()
    corr = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    assert (corr > 0.5) if sigma else (abs(corr) < 0.05)


def test_validity_head_compares_a_mask_run_with_drawn_holes(vh, tmp_path):
    """End to end on a plane layout (its real capture has holes): the mask row has none, the drawn row some, both
    against the same frames' real holes; the head's expected rates on both splits."""
    from conftest import make_plane_layout
    from test_bench_scripts import _samples_run

    lay = make_plane_layout(tmp_path / "ds", scenes=3, frames=2, width=24, height=16)
    run = _samples_run(tmp_path / "mask", lay, lambda cad, real: np.where(cad > 0, cad + 0.003, 0.0))
    assert vh.main(["--mask-run", str(run), "--steps", "40", "--json", str(tmp_path / "h.json")]) == 0
    out = json.loads((tmp_path / "h.json").read_text())
    rows = out["rows"]
    drawn = next(v for k, v in rows.items() if k.startswith("mask + head, drawn"))
    assert rows["mask"]["hole_rate"] == 0.0 and 0.0 < drawn["hole_rate"] < 1.0
    assert drawn["hole_rate_real"] == rows["mask"]["hole_rate_real"] > 0  # the same frames' real holes
    assert set(out["expected"]) == {"val", "train"} and 0.0 < out["expected"]["train"]["all"] < 1.0
