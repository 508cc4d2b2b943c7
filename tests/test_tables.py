"""The benchmark's presentation (benchmark/tables.py): themed tables, the rule that marks unconverged
baselines, the clipped bar charts. Tiny hand-written tables, no benchmark run."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pytest
from PIL import Image

from sim2real_kit.benchmark import COLUMNS, DOWNSTREAM_COLUMNS, compare_table
from sim2real_kit.benchmark import tables as T


def _table() -> list[dict]:
    rows = [
        {"simulator": "cad", "seed": 0, "w1_mm": 64.3, "disc_fake_pct": 19.8, "hole_gap_pct": 10.4},
        {
            "simulator": "random",
            "seed": 0,
            "w1_mm": 70.0,
            "disc_fake_pct": 22.4,
            "hole_gap_pct": 5.2,
            "note": "one seed",
        },
        {"simulator": "pix2pix", "seed": 0, "w1_mm": 1448.6, "disc_fake_pct": 0.0, "hole_gap_pct": 10.4},
        {"simulator": "cyclegan", "seed": 0, "w1_mm": 60.0, "disc_fake_pct": 30.0, "hole_gap_pct": 9.0},
        {"simulator": "stage1", "seed": 0, "w1_mm": 42.6, "disc_fake_pct": 63.0, "hole_gap_pct": 10.4},
        {"simulator": "stage1", "seed": 1, "w1_mm": 44.6, "disc_fake_pct": 61.0, "hole_gap_pct": 10.4},
        {"simulator": "real", "seed": 0, "w1_mm": 0.0, "disc_fake_pct": 8.3, "hole_gap_pct": 0.0},
    ]
    return compare_table(rows, ["w1_mm", "disc_fake_pct", "hole_gap_pct"])


def test_every_column_in_exactly_one_theme():
    keys = [c.key for theme in T.THEMES for c in theme.columns]
    assert sorted(keys) == sorted(c.key for c in (*COLUMNS, *DOWNSTREAM_COLUMNS))
    assert [t.name for t in T.THEMES] == [
        "depth",
        "w1_bins",
        "holes",
        "3d",
        "discriminator",
        "stability",
        "downstream",
    ]
    assert all(c.better == "lower" for c in T._columns(*T.W1_BINS, "w1_pooled_mm", "tail_gap_pct", "obj_cd_l2_x1000"))
    assert all(c.better == "higher" for c in T._columns("obj_miou_pct", "obj_fscore_pct"))
    assert T._columns("tail_pct")[0].better is None  # shown next to the real one, not a score


def test_unconverged_rule():
    table = _table()
    # W1 above clean CAD's: pix2pix; random is above too but it is not trained; real and cad never
    assert T.unconverged(table) == {"pix2pix": "W1 1448.6 mm > clean CAD's 64.3 mm"}
    flat, falling = [5.0, 5.1, 4.9, 5.2, 5.3], [9.0, 7.0, 5.0, 3.0, 1.0]
    out = T.unconverged(table, {"cyclegan": flat, "stage1": falling, "pix2pix": falling})
    assert out == {"pix2pix": "W1 1448.6 mm > clean CAD's 64.3 mm", "cyclegan": "training loss did not fall"}
    assert T.unconverged([{"simulator": "pix2pix", "w1_mm": 500.0}]) == {}  # no clean CAD row: no W1 rule
    assert T.loss_fell(falling) is True and T.loss_fell(flat) is False and T.loss_fell([1.0, math.nan, 2.0]) is None


def test_read_losses(tmp_path):
    gan = tmp_path / "losses.csv"
    gan.write_text("step,epoch,loss,loss_D,loss_G\n10,1,98.1,0.6,97.5\n20,2,90.6,0.4,90.2\n")
    assert T.read_losses(gan) == [97.5, 90.2]  # the generator's loss when logged
    plain = tmp_path / "plain.csv"
    plain.write_text("step,loss\n1,0.5\n2,nan\n3,bad\n")
    assert T.read_losses(plain)[0] == 0.5 and len(T.read_losses(plain)) == 2
    assert T.read_losses(tmp_path / "missing.csv") == []


def test_themed_markdown_marks_unconverged_and_skips_empty_themes():
    table = _table()
    flagged = T.unconverged(table)
    md = T.themed_markdown(table, labels={"pix2pix": "Pix2Pix"}, flagged=flagged)
    headings = [line for line in md.splitlines() if line.startswith("#### ")]
    assert headings == [
        "#### Depth realism (per pixel, against the real frame; W1 on matched pixels, pooled W1 as the release)",
        "#### Holes, gross mismatches and edges",
        "#### Realism: two-sample test, and the frozen Stage-I discriminator",
        "#### Notes",
    ]  # 3D, stability and downstream measured nothing here
    lines = md.splitlines()
    pix = [line for line in lines if line.startswith("| Pix2Pix (unconverged) (`pix2pix`) |")]
    assert len(pix) == 3
    # the unconverged pix2pix's 0 % judged fake does not win the column: CAD's 19.8 does
    disc = lines[lines.index("#### Realism: two-sample test, and the frozen Stage-I discriminator") :]
    assert disc[2].startswith("Two-sample AUC: a fresh 3D patch discriminator")  # the note under the heading
    assert "| cad | 1 | **19.8** |" in disc and "| Pix2Pix (unconverged) (`pix2pix`) | 1 | 0.0 |" in disc
    assert "| stage1 | 2 | **43.60 ± 1.41** |" in lines  # mean ± std over seeds, best W1
    assert "- `pix2pix`: W1 1448.6 mm > clean CAD's 64.3 mm" in lines and "- `random`: one seed" in lines
    assert T.marked_labels(["a", "b"], {"a": "A"}, {"b": "x"}) == {"a": "A", "b": "b (unconverged)"}


def _entry(name, key, values):
    return compare_table([{"simulator": name, "seed": i, key: v} for i, v in enumerate(values)], [key])[0]


def test_bold_only_out_of_the_seeds_spread():
    col = T.Column("w1", "W1 ↓", "lower", 2)
    # 10 ± 1 vs 14 ± 1: the gap (4) exceeds both stds -> bold
    table = [_entry("a", "w1", [9.0, 11.0]), _entry("b", "w1", [13.0, 15.0]), _entry("real", "w1", [0.0])]
    assert T.best_entries(table, col) == (["a"], False)
    # 10 ± 1 vs 12 ± 2.83: the gap (2) is inside b's spread -> nothing bold
    table = [_entry("a", "w1", [9.0, 11.0]), _entry("b", "w1", [10.0, 14.0])]
    assert T.best_entries(table, col) == ([], False)
    md = T.markdown_table(table, [col])
    assert "**" not in md and T.NO_SPREAD not in md
    # the second best ran one seed (a deterministic simulator): tested against the best's spread alone
    assert T.best_entries([_entry("a", "w1", [9.0, 11.0]), _entry("cad", "w1", [11.5])], col) == (["a"], False)
    assert T.best_entries([_entry("a", "w1", [9.0, 11.0]), _entry("cad", "w1", [10.5])], col) == ([], False)
    # higher is better: the order flips
    hi = T.Column("f", "F ↑", "higher", 1)
    table = [_entry("a", "f", [60.0, 62.0]), _entry("b", "f", [50.0, 52.0])]
    assert T.best_entries(table, hi) == (["a"], False)


def test_one_seed_keeps_the_old_rule_and_marks_the_table():
    col = T.Column("w1", "W1 ↓", "lower", 2)
    table = [_entry("a", "w1", [10.0]), _entry("b", "w1", [10.001]), _entry("c", "w1", [12.0])]
    assert T.best_entries(table, col) == (["a", "b"], True)  # equal at 2 decimals: both bold, no spread known
    md = T.markdown_table(table, [col])
    assert "| a | 1 | **10.00** |" in md and "| b | 1 | **10.00** |" in md and "| c | 1 | 12.00 |" in md
    assert f"_{T.NO_SPREAD}:" in md
    assert T.best_entries([_entry("a", "w1", [10.0])], col) == (["a"], False)  # a lone competitor
    assert T.best_entries(table, T.Column("w1", "W1", None)) == ([], False)  # no direction: no bold


def test_binned_bars(tmp_path):
    rows = [
        {"simulator": "cad", "seed": 0, **dict.fromkeys(T.W1_BINS, 5.0)},
        {"simulator": "stage1", "seed": 0, **dict.fromkeys(T.W1_BINS, 2.0)},
        {"simulator": "stage1", "seed": 1, **dict.fromkeys(T.W1_BINS, 3.0)},
        {"simulator": "pix2pix", "seed": 0, **dict.fromkeys(T.W1_BINS, 900.0), "w1_inc60_90_mm": math.nan},
        {"simulator": "real", "seed": 0, **dict.fromkeys(T.W1_BINS, 0.0)},
    ]
    table = compare_table(rows, list(T.W1_BINS))
    fig = T.binned_bars(table, labels={"stage1": "Stage-I"}, path=tmp_path / "bins.png")
    assert len(fig.axes) == 2 and Image.open(tmp_path / "bins.png").size[0] > 500
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0-2 px", "2-5 px", "> 5 px"]
    assert fig.axes[0].get_ylim()[1] < 900  # the outlier is cut at the axis top
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert legend == ["cad", "Stage-I", "pix2pix", "real"]
    assert T.binned_bars([{"simulator": "x"}]) is None


def test_bar_chart_clips_and_marks(tmp_path):
    table = _table()
    path = T.bar_chart(table, "w1_mm", "W1", tmp_path / "w1.png")
    assert path.is_file() and Image.open(path).size[0] > 400
    assert T.clip_limit([e["w1_mm"] for e in table]) == pytest.approx(1.3 * 70.0)
    assert T.bar_chart([{"simulator": "x", "w1_mm": math.nan}], "w1_mm", "W1", tmp_path / "none.png") is None
