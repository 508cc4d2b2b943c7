import numpy as np
import pytest
import torch

from sim2real_kit.config import load_config
from sim2real_kit.data.dataset import PairedDepthDataset, crop_resize
from sim2real_kit.depth import decode_residual, denormalize_depth
from sim2real_kit.errors import LayoutError, Sim2RealError


def test_eval_items(plane_layout):
    ds = PairedDepthDataset(plane_layout.root, "val", size=16)
    item = ds[0]
    for k in ("cad", "real", "cad_n", "real_n", "target", "mask"):
        assert item[k].shape == (1, 16, 16) and item[k].dtype == torch.float32
    assert item["pose"].shape == (4, 4) and item["camera"].shape == (4,)
    # eval transform: centre crop 24x24 of a 32x24 frame -> 16 px: fx scales by 16/24
    cam = plane_layout.camera
    assert item["camera"][0].item() == pytest.approx(cam.fx * 16 / 24)
    assert item["camera"][2].item() == pytest.approx((cam.cx - 4) * 16 / 24)
    # residual decodes back to the real depth on valid pixels
    m = item["mask"] > 0
    real = denormalize_depth(decode_residual(item["target"], item["cad_n"]))
    torch.testing.assert_close(real[m], item["real"][m], atol=1e-4, rtol=0)
    # holes (first row of real is 0) are masked in "mask" mode
    assert item["mask"].mean() < 1


def test_random_crops_are_seeded_by_epoch(plane_layout):
    ds = PairedDepthDataset(plane_layout.root, "train", size=16, seed=3)
    a, b = ds[1], ds[1]
    torch.testing.assert_close(a["cad"], b["cad"])
    boxes = {ds.box(1)}
    for e in range(1, 8):
        ds.set_epoch(e)
        boxes.add(ds.box(1))
    assert len(boxes) > 3
    ds.set_epoch(0)
    torch.testing.assert_close(ds[1]["cad"], a["cad"])


def test_generate_mode_keeps_holes(plane_layout):
    ds = PairedDepthDataset(plane_layout.root, "val", size=24, holes="generate")
    item = ds[0]
    assert item["real_n"][0, 0].eq(1).all()  # the hole row stays far depth
    assert item["mask"].mean() == 1  # every CAD pixel counts


def test_direct_target(plane_layout):
    ds = PairedDepthDataset(plane_layout.root, "val", size=16, target="direct")
    item = ds[0]
    torch.testing.assert_close(item["target"], item["real_n"])


def test_from_config_and_loader(plane_layout):
    cfg = load_config("tiny", overrides=["data.size=16"])
    ds = PairedDepthDataset.from_config(cfg, plane_layout.root, "train")
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["target"].shape == (2, 1, 16, 16)


def test_crop_resize_zero_outside():
    d = np.arange(16, dtype=np.float32).reshape(4, 4) + 1
    out = crop_resize(d, (-2, 0, 8, 8), 8)
    assert (out[:, :2] == 0).all() and (out[4:] == 0).all()
    np.testing.assert_array_equal(out[:4, 2:6], d)


def test_empty_split(plane_layout):
    (plane_layout.root / "lasa_depth" / "val.lst").write_text("\n")
    with pytest.raises(LayoutError, match="val.lst is empty"):
        PairedDepthDataset(plane_layout.root, "val")


def test_items_carry_only_the_requested_maps(plane_layout):
    full = PairedDepthDataset(plane_layout.root, "train", size=16)[0]
    ds = PairedDepthDataset(plane_layout.root, "train", size=16, keys=("cad_n", "target", "mask"))
    item = ds[0]
    assert {"cad_n", "target", "mask"} <= set(item) and "cad" not in item and "real" not in item
    for k in ("cad_n", "target", "mask"):
        torch.testing.assert_close(item[k], full[k])
    with pytest.raises(Sim2RealError, match="unknown map keys"):
        PairedDepthDataset(plane_layout.root, "train", keys=("depth",))


def test_training_reads_each_frame_once_and_items_stay_the_same(plane_layout, monkeypatch):
    """Each epoch of training reads every frame: its two PNGs are decoded and encoded once per dataset, kept, and
    the items of later epochs equal those of a dataset that reads the files every time."""
    from sim2real_kit.data import dataset as dataset_mod

    reads = []
    read_frame = plane_layout.read_frame
    monkeypatch.setattr(plane_layout, "read_frame", lambda ref, **kw: (reads.append(ref), read_frame(ref, **kw))[1])
    ds = PairedDepthDataset(plane_layout, "train", size=16, seed=3, keys=("cad_n", "target", "mask"))
    for epoch in range(3):
        ds.set_epoch(epoch)
        uncached = PairedDepthDataset(plane_layout.root, "train", size=16, seed=3, keys=("cad_n", "target", "mask"))
        # a new dataset reads the files
        uncached.set_epoch(epoch)
        for i in range(len(ds)):
            item, ref = ds[i], uncached[i]
            for key in ("cad_n", "target", "mask", "camera", "pose"):
                assert torch.equal(item[key], ref[key]), (epoch, i, key)
    assert sorted(reads) == sorted(ds.refs)  # once each, over three epochs
    assert not ds.frame_maps(0)[0].flags.writeable

    monkeypatch.setattr(dataset_mod, "FRAME_CACHE_MB", 0)  # nothing kept: read every time
    small = PairedDepthDataset(plane_layout, "train", size=16)
    reads.clear()
    small[0], small[0]
    assert len(reads) == 2
