"""report.py: plain values (numpy, torch, Paths, NaN), CSV files (the NaN rule, exact floats,
round-trips) and markdown tables (exact text)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sim2real_kit.report import csv_cell, format_value, markdown_table, plain, write_csv


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------- plain
def test_plain_numpy_torch_paths_and_containers():
    obj = {
        "f64": np.float64(0.1),
        "f32": np.float32(0.5),
        "i": np.int64(7),
        "b": np.bool_(True),
        "s": np.str_("x"),
        "arr": np.arange(4).reshape(2, 2),
        "t": torch.tensor([[1.5, 2.0]]),
        "t0": torch.tensor(3),
        "p": Path("/a/b"),
        "tup": (1, (2, 3)),
        1: "int key",
        "none": None,
    }
    out = plain(obj)
    assert out == {
        "f64": 0.1,
        "f32": 0.5,
        "i": 7,
        "b": True,
        "s": "x",
        "arr": [[0, 1], [2, 3]],
        "t": [[1.5, 2.0]],
        "t0": 3,
        "p": "/a/b",
        "tup": [1, [2, 3]],
        "1": "int key",
        "none": None,
    }
    types = {k: type(v) for k, v in out.items()}
    assert types["f64"] is float and types["i"] is int and types["b"] is bool and types["s"] is str
    assert type(out["arr"][0][0]) is int and type(out["t0"]) is int
    assert json.loads(json.dumps(out)) == out  # JSON round-trip


def test_plain_nan_kept_or_none_for_strict_json():
    obj = {"nan": float("nan"), "npnan": np.float32("nan"), "inf": -math.inf, "arr": np.array([1.0, np.nan])}
    out = plain(obj)
    assert math.isnan(out["nan"]) and math.isnan(out["npnan"]) and out["inf"] == -math.inf
    assert out["arr"][0] == 1.0 and math.isnan(out["arr"][1])
    strict = plain(obj, strict_json=True)
    assert strict == {"nan": None, "npnan": None, "inf": None, "arr": [1.0, None]}
    json.dumps(strict, allow_nan=False)  # strict JSON
    assert plain({"x": 2.5, "ok": True}, strict_json=True) == {"x": 2.5, "ok": True}


def test_plain_leaves_other_objects_alone():
    marker = object()
    assert plain([marker])[0] is marker
    assert plain("text") == "text" and plain(3) == 3 and plain(None) is None


# ---------------------------------------------------------------------------- CSV
def test_write_csv_round_trip_and_nan_rule(tmp_path):
    rows = [
        {"name": "a", "x": 0.1 + 0.2, "n": 3, "v": float("nan"), "l": [1, 2.5], "d": {"k": 1}},
        {"name": "b", "x": np.float64(1e-9), "n": np.int64(-4), "v": None, "ignored": "?"},
        {"name": "c", "x": math.inf, "flag": True, "t": torch.tensor(0.25)},
    ]
    path = write_csv(tmp_path / "out.csv", rows, ["name", "x", "n", "v", "l", "d", "flag", "t"])
    assert path == tmp_path / "out.csv" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # atomic, no temp
    back = read_csv(path)
    assert [r["name"] for r in back] == ["a", "b", "c"]
    assert float(back[0]["x"]) == 0.1 + 0.2  # repr: every digit
    assert back[1]["x"] == "1e-09" and back[1]["n"] == "-4" and back[2]["x"] == "inf"
    assert back[0]["v"] == "nan" and back[1]["v"] == ""  # NaN: "nan" (not a number), None: empty (no value)
    assert json.loads(back[0]["l"]) == [1, 2.5] and json.loads(back[0]["d"]) == {"k": 1}
    assert back[1]["l"] == "" and back[2]["flag"] == "True" and back[2]["t"] == "0.25"
    assert "ignored" not in back[1]
    text = path.read_text()
    assert text.splitlines()[0] == "name,x,n,v,l,d,flag,t" and text.endswith("\n") and "\r" not in text


def test_write_csv_nan_as_text_and_default_columns(tmp_path):
    rows = [{"a": 1.0, "b": float("nan")}, {"c": None, "a": np.float32("nan")}]
    path = write_csv(tmp_path / "t.csv", rows)
    assert path.read_text() == "a,b,c\n1.0,nan,\nnan,,\n"  # columns: keys in order of appearance; None empty
    assert write_csv(tmp_path / "e.csv", rows, nan="").read_text() == "a,b,c\n1.0,,\n,,\n"


def test_csv_cell():
    assert csv_cell(None) == "" and csv_cell(float("nan")) == "nan" and csv_cell(float("nan"), nan="NA") == "NA"
    assert csv_cell(0.5) == "0.5" and csv_cell(-math.inf) == "-inf" and csv_cell(-0.0) == "-0.0"
    assert csv_cell(np.float32(0.3)) == "0.3" and csv_cell(np.float16(0.1)) == "0.1"  # digits of its precision
    assert csv_cell(np.float32("nan")) == "nan" and csv_cell(np.float32("nan"), nan="") == ""
    assert csv_cell(np.float64(1 / 3)) == "0.3333333333333333" and csv_cell(np.bool_(False)) is False
    assert csv_cell((1, 2)) == "[1, 2]" and csv_cell("s") == "s" and csv_cell(7) == 7


# ---------------------------------------------------------------------------- markdown
def test_format_value():
    assert format_value(None) == "" and format_value(True) == "true" and format_value(12) == "12"
    assert format_value(3.14159265) == "3.142" and format_value(float("nan")) == "nan"
    assert format_value(1e-9) == "1e-09" and format_value(np.float64(2.5)) == "2.5" and format_value(np.int64(4)) == "4"
    assert format_value([1, 2]) == "[1, 2]" and format_value(list(range(40))).endswith("...")
    assert len(format_value(list(range(40)))) == 60 and format_value("x|y") == "x|y"


def test_markdown_table_exact_text():
    rows = [
        {"variant": "full", "n": 2, "w1": 1.23456, "note": "ok"},
        {"variant": "wo_res", "n": 1, "w1": float("nan")},
        {"variant": "none", "n": 0, "w1": None, "note": None},
    ]
    md = markdown_table(
        rows,
        ["variant", "n", "w1", "note"],
        formats={"w1": ".2f", "note": lambda v: v.upper()},
        labels={"w1": "W1 mm ↓"},
        align={"n": "right", "w1": "right", "note": "center"},
    )
    assert md == (
        "| variant | n | W1 mm ↓ | note |\n"
        "|---|---:|---:|:---:|\n"
        "| full | 2 | 1.23 | OK |\n"
        "| wo_res | 1 | nan |  |\n"
        "| none | 0 |  |  |\n"
    )
    assert markdown_table([{"a": 0.123456}], ["a"]) == "| a |\n|---|\n| 0.1235 |\n"  # format_value by default
    assert markdown_table([], ["a", "b"], align={"a": "left"}) == "| a | b |\n|:---|---|\n"
    with pytest.raises(ValueError, match="align"):
        markdown_table([], ["a"], align={"a": "middle"})
