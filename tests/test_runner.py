"""Runner tests: papermill execution of toy notebooks (tests/data/notebooks), the HTML index,
ablation grids (results / summary / skip / parallel), the error paths and the hygiene checks.

The toy sequence: 01_make writes run_dir/data/value.json (+ config.yaml), 02_use reads it and
computes result = scale * value + seed; 03_fail raises in cell 3; 04_sleep sleeps 60 s.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from sim2real_kit.errors import ConfigError, Sim2RealError
from sim2real_kit.runner import (
    EXPECTED_SECONDS,
    NotebookFailure,
    check_notebook,
    flatten_metrics,
    load_grid,
    notebook_parameters,
    run_grid,
    run_notebooks,
    summarize_grid,
    write_index,
)

TOYS = Path(__file__).parent / "data" / "notebooks"
MAKE, USE, FAIL, SLEEP = (TOYS / f"{n}.ipynb" for n in ("01_make", "02_use", "03_fail", "04_sleep"))
COMMON = {"preset": "tiny", "quick": True, "overrides": []}


@pytest.fixture(scope="session")
def python3_kernel():
    """papermill runs the toys with the kernel named python3: install the venv's ipykernel if absent."""
    from jupyter_client.kernelspec import KernelSpecManager

    if "python3" not in KernelSpecManager().find_kernel_specs():
        subprocess.run(
            [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"],
            check=True,
            capture_output=True,
        )
    return "python3"


def write_grid(path: Path, counter: Path | None = None, **changes) -> Path:
    grid = {
        "name": "toy",
        "setup": ["01_make"],
        "notebooks": ["02_use"],
        "base": {**COMMON, "overrides": ["disc.threshold=0.4"]},
        "seeds": [0, 1],
        "metrics": ["use.result", "use.n_overrides"],
        "variants": {"full": {}, "scaled": {"parameters": {"scale": 3.0}, "overrides": ["disc.binary=false"]}},
    }
    if counter is not None:
        grid["base"]["counter_file"] = str(counter)
    grid.update(changes)
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------- run_notebooks
@pytest.mark.notebook
@pytest.mark.usefixtures("python3_kernel")
def test_sequence_reads_previous_outputs_and_index(tmp_path, capsys):
    run_dir = tmp_path / "run"
    start = time.monotonic()
    report = run_notebooks(
        run_dir,
        [MAKE, USE],
        {**COMMON, "seed": 3, "overrides": ["disc.threshold=0.3"]},
        per_notebook={"02_use": {"scale": 3.0}},
    )
    elapsed = time.monotonic() - start
    assert report.ok and [r.status for r in report.notebooks] == ["ok", "ok"]
    # 02 read 01's value from run_dir: 3.0 * 1.0 + seed 3
    assert report.metrics["use"] == {"result": 6.0, "n_overrides": 1, "label": "toy"}
    assert report.metrics["make"]["seed"] == 3 and report.metrics["make"]["quick"] is True
    assert (run_dir / "notebooks" / "01_make.ipynb").is_file() and (run_dir / "notebooks" / "02_use.ipynb").is_file()
    # only declared names injected, run_dir absolute
    assert report.notebooks[0].parameters["run_dir"] == str(run_dir.resolve())
    assert "scale" not in report.notebooks[0].parameters and report.notebooks[1].parameters["scale"] == 3.0
    out = capsys.readouterr().out
    # no expected range for quick runs; the tail says how long it took as m:ss
    assert re.search(r"^\[1/2\] 01_make … done in 0:\d\d$", out, re.M), out
    assert re.search(r"^\[2/2\] 02_use … done in 0:\d\d$", out, re.M), out

    index = write_index(run_dir)
    page = index.read_text()
    assert index == run_dir.resolve() / "index.html"
    for name in ("01_make", "02_use"):
        assert f'href="notebooks/{name}.html"' in page and (run_dir / "notebooks" / f"{name}.html").is_file()
        assert f'href="notebooks/{name}.ipynb"' in page
    # every metric of each notebook, nested keys dotted, numbers formatted; the toys have no story numbers
    for key, value in (("nested.a", "1"), ("nested.b", "0.5"), ("result", "6"), ("n_overrides", "1")):
        assert f'<td class="l">{key}</td><td class="num">{value}</td>' in page
    assert page.count('class="status ok">ok<') == 2 and "The method in numbers" not in page
    assert "http://" not in page and "https://" not in page  # no external assets
    assert elapsed < 30, f"two toy notebooks took {elapsed:.1f} s"


@pytest.mark.notebook
@pytest.mark.usefixtures("python3_kernel")
def test_failure_names_notebook_cell_and_exception(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(NotebookFailure) as info:
        run_notebooks(run_dir, [MAKE, FAIL, USE], {"seed": 1}, progress=False, index=True)
    err = info.value
    msg = str(err)
    assert "03_fail" in msg and "cell 3" in msg and "# this cell fails on purpose" in msg
    assert "ValueError: boom on purpose (y=2)" in msg and str(run_dir / "notebooks" / "03_fail.ipynb") in msg
    assert (err.cell_index, err.ename, err.executed_cell_index) == (3, "ValueError", 4)  # +1: injected cell
    assert err.executed_path.is_file()
    assert [r.status for r in err.report.notebooks] == ["ok", "failed", "not run"]
    page = (run_dir / "index.html").read_text()  # index=True writes it even on failure
    assert 'class="status failed">failed<' in page and 'class="status notrun">not run<' in page
    assert "boom on purpose" in page and 'href="notebooks/02_use.html"' not in page


@pytest.mark.notebook
@pytest.mark.usefixtures("python3_kernel")
def test_timeout_stops_the_notebook(tmp_path):
    start = time.monotonic()
    with pytest.raises(NotebookFailure) as info:
        run_notebooks(tmp_path / "run", [SLEEP], {}, timeout_s=3, progress=False)
    assert time.monotonic() - start < 15
    assert "04_sleep" in str(info.value) and "cell 2" in str(info.value) and "CellTimeoutError" in str(info.value)
    with pytest.raises(NotebookFailure, match="01_make failed outside any cell: NoSuchKernel"):
        run_notebooks(tmp_path / "k", [MAKE], {}, kernel_name="no_such_kernel", progress=False)


def test_notebook_timeout_auto_scales_with_the_expected_range():
    from sim2real_kit.runner import notebook_timeout

    assert notebook_timeout("auto", (300, 720)) == 4 * 720  # 04_stage2 under load (21 min) is not stopped
    assert notebook_timeout("auto", None) is None  # GPU presets, quick runs: no range, no limit
    assert notebook_timeout(100, (300, 720)) == 100 and notebook_timeout("90", None) == 90
    assert notebook_timeout("none", (300, 720)) is None and notebook_timeout(None, (1, 2)) is None
    with pytest.raises(ConfigError, match="'soon'"):
        notebook_timeout("soon", None)
    from sim2real_kit.cli import build_parser

    assert build_parser().parse_args(["notebooks"]).timeout == "auto"


@pytest.mark.notebook
@pytest.mark.usefixtures("python3_kernel")
def test_auto_timeout_stops_a_notebook_past_its_expected_range(tmp_path, monkeypatch):
    from sim2real_kit.runner import notebooks as nbs

    monkeypatch.setitem(nbs.EXPECTED_SECONDS, "tiny", {"04_sleep": (0.25, 0.75)})  # auto: 3 s; it sleeps 60 s
    start = time.monotonic()
    with pytest.raises(NotebookFailure) as info:
        run_notebooks(tmp_path / "run", [SLEEP], {"preset": "tiny", "quick": False}, timeout_s="auto", progress=False)
    assert time.monotonic() - start < 15
    assert "CellTimeoutError" in str(info.value) and "timeout_s=3.0" in str(info.value)


@pytest.mark.notebook
@pytest.mark.usefixtures("python3_kernel")
def test_progress_line_shows_expected_range(tmp_path, capsys, monkeypatch):
    from sim2real_kit.runner import notebooks as nbs

    monkeypatch.setitem(nbs.EXPECTED_SECONDS, "tiny", {"01_make": (15, 30), "02_use": (0, 0)})
    run_notebooks(tmp_path / "run", [MAKE, USE], {"preset": "tiny", "quick": False})
    out = capsys.readouterr().out
    assert re.search(r"^\[1/2\] 01_make \(expected 0:15-0:30\) … done in 0:\d\d$", out, re.M), out
    assert re.search(r"^\[2/2\] 02_use \(expected 0:00-0:00\) … done in 0:\d\d \(slower than expected\)$", out, re.M)


def test_expected_seconds_per_preset():
    from sim2real_kit.runner import EXPECTED_SECONDS, default_notebooks, expected_seconds
    from sim2real_kit.runner.notebooks import _fmt_clock

    assert expected_seconds("03_discriminator", "tiny") == EXPECTED_SECONDS["tiny"]["03_discriminator"] == (20, 60)
    assert expected_seconds("03_discriminator", "tiny", quick=True) is None  # quick: unknown
    assert expected_seconds("03_discriminator", "sd21") is None and expected_seconds("99_new", "tiny") is None
    assert set(EXPECTED_SECONDS["tiny"]) == {p.stem for p in default_notebooks()}  # every notebook has a range
    assert [_fmt_clock(s) for s in (0, 41, 450, 3725)] == ["0:00", "0:41", "7:30", "1:02:05"]


@pytest.mark.notebook
@pytest.mark.usefixtures("python3_kernel")
def test_kernel_has_no_open3d_webrtc_banner(tmp_path, monkeypatch):
    """open3d prints "[Open3D INFO] WebRTC ..." at import in a Jupyter kernel; the runner's kernels do not."""
    monkeypatch.delenv("OPEN3D_DISABLE_WEB_VISUALIZER", raising=False)
    path = tmp_path / "01_o3d.ipynb"
    nbformat.write(_toy_nb("import open3d\nprint('imported')"), path)
    report = run_notebooks(tmp_path / "run", [path], {}, progress=False)
    executed = nbformat.read(report.notebooks[0].executed, as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "imported" in text and "Open3D" not in text and "WebRTC" not in text, text
    assert "OPEN3D_DISABLE_WEB_VISUALIZER" not in os.environ  # set for the kernel only, then restored


@pytest.mark.notebook
@pytest.mark.usefixtures("python3_kernel")
def test_kernel_starts_with_the_malloc_settings(tmp_path, monkeypatch):
    """glibc reads GLIBC_TUNABLES at process start: the runner's kernels (and what they spawn) get the kit's
    malloc settings, unless the environment has its own."""
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    path = tmp_path / "01_env.ipynb"
    nbformat.write(_toy_nb("import os\nprint(os.environ.get('GLIBC_TUNABLES'))"), path)
    report = run_notebooks(tmp_path / "run", [path], {}, progress=False)
    executed = nbformat.read(report.notebooks[0].executed, as_version=4)
    tunables = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"
    assert executed.cells[-1].outputs[0]["text"] == tunables + "\n"
    assert "GLIBC_TUNABLES" not in os.environ  # set for the kernel only, then restored


def test_make_lab_starts_jupyterlab_with_the_kernels_environment():
    """`make lab` gives JupyterLab's kernels the runner's KERNEL_ENV (read from it, not a copy in the Makefile)."""
    import shutil

    from sim2real_kit.runner.execute import KERNEL_ENV
    from sim2real_kit.runner.notebooks import REPO_ROOT

    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    if shutil.which("make") is None or not venv_python.exists():
        pytest.skip("needs make and the repo's .venv (make install)")
    out = subprocess.run(["make", "-n", "lab"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    (line,) = [ln for ln in out.splitlines() if "jupyter lab" in ln]
    for key, value in KERNEL_ENV.items():
        assert f"{key}={value} " in line, (key, line)


@pytest.mark.notebook
@pytest.mark.usefixtures("python3_kernel")
def test_executed_copy_is_written_at_start_and_end_not_at_every_cell(tmp_path, monkeypatch):
    """papermill wrote the whole executed copy at each cell's start and end (0.53 s a write for 01_data's 29 MB);
    the runner's engine writes it at the start and the end (and on the autosave clock), complete at the end."""
    import papermill.engines

    writes = []
    write = papermill.engines.write_ipynb
    monkeypatch.setattr(papermill.engines, "write_ipynb", lambda nb, path: (writes.append(path), write(nb, path)))
    path = tmp_path / "01_cells.ipynb"
    nbformat.write(_toy_nb(*[f"print({i})" for i in range(6)]), path)
    report = run_notebooks(tmp_path / "run", [path], {}, progress=False)
    assert len(writes) == 2, writes  # papermill alone: 2 + 2 per cell
    executed = nbformat.read(report.notebooks[0].executed, as_version=4)
    assert [c.outputs[0]["text"] for c in executed.cells[-6:]] == [f"{i}\n" for i in range(6)]
    for cell in executed.cells:
        meta = cell.metadata.papermill
        assert meta["status"] == "completed" and meta["end_time"] and meta["duration"] is not None, meta
    assert executed.metadata.papermill["duration"] is not None


@pytest.mark.notebook
@pytest.mark.usefixtures("python3_kernel")
def test_finished_kernel_is_killed_not_asked_to_exit(tmp_path):
    """A kernel that finished its notebook is killed: its exit (interpreter teardown, exit handlers: 1.2-2.5 s for
    a kernel holding torch and diffusers) is not waited for."""
    marker = tmp_path / "exit_handler_ran"
    path = tmp_path / "01_exit.ipynb"
    nbformat.write(
        _toy_nb(f"import atexit, pathlib\natexit.register(pathlib.Path({str(marker)!r}).write_text, 'x')"), path
    )
    report = run_notebooks(tmp_path / "run", [path], {}, progress=False)
    assert report.ok
    time.sleep(1.0)  # a kernel exiting on its own would have run the handler by now
    assert not marker.exists()


def test_unknown_parameters_are_errors_listing_declared(tmp_path):
    with pytest.raises(ConfigError) as info:
        run_notebooks(tmp_path / "a", [MAKE, USE], {**COMMON, "learning_rate": 1e-3}, progress=False)
    msg = str(info.value)
    assert "learning_rate" in msg
    assert "01_make: run_dir, preset, quick, seed, overrides, value" in msg
    assert "02_use: run_dir, preset, quick, seed, overrides, scale, counter_file" in msg
    with pytest.raises(ConfigError, match=r"per_notebook\['01_make'\]: unknown parameter\(s\) scale; 01_make declares"):
        run_notebooks(tmp_path / "b", [MAKE, USE], {}, per_notebook={"01_make": {"scale": 2.0}}, progress=False)
    with pytest.raises(ConfigError, match="unknown config key 'disc.nope'"):
        run_notebooks(tmp_path / "c", [MAKE], {"overrides": ["disc.nope=1"]}, progress=False)
    with pytest.raises(ConfigError, match="not found"):
        run_notebooks(tmp_path / "d", ["99_missing"], {}, progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()  # nothing ran


def test_notebook_parameters_reads_equals_signs_papermill_skips():
    # papermill's inspect_notebook drops lines with two `=`; the kit's convention has them
    params = notebook_parameters(USE)
    assert list(params) == ["run_dir", "preset", "quick", "seed", "overrides", "scale", "counter_file"]
    assert params["overrides"] == "[]" and params["scale"] == "2.0"


# ---------------------------------------------------------------------------- grids
@pytest.mark.notebook
@pytest.mark.usefixtures("python3_kernel")
def test_grid_results_summary_and_skip(tmp_path):
    counter = tmp_path / "calls.txt"
    grid_file = write_grid(tmp_path / "toy.yaml", counter)
    out = tmp_path / "out"
    report = run_grid(grid_file, out, notebooks=TOYS, progress=False)
    assert sorted(report.ran) == ["full/seed0", "full/seed1", "scaled/seed0", "scaled/seed1"]
    assert len(counter.read_text().splitlines()) == 4
    rows = read_csv(out / "results.csv")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    by_key = {(r["variant"], r["seed"]): r for r in rows}
    # setup ran once (value 1.0, linked data/), result = scale * 1.0 + seed
    assert float(by_key["full", "1"]["use.result"]) == 3.0 and float(by_key["scaled", "0"]["use.result"]) == 3.0
    assert by_key["scaled", "1"]["use.n_overrides"] == "2"  # base + variant overrides
    assert (out / "full" / "seed0" / "data").is_symlink() and (out / "full" / "seed0" / "done.json").is_file()
    summary = {r["variant"]: r for r in report.summary}
    assert summary["full"]["n"] == 2 and summary["full"]["use.result.mean"] == pytest.approx(2.5)
    assert summary["scaled"]["use.result.mean"] == pytest.approx(3.5)
    assert summary["scaled"]["use.result.std"] == pytest.approx(2**-0.5)
    assert read_csv(out / "summary.csv")[1]["use.result.mean"] == "3.5"
    md = (out / "summary.md").read_text()
    assert "| variant | n | use.result | use.n_overrides |" in md and "| scaled | 2 | 3.5 ± 0.71 | 2 ± 0 |" in md

    start = time.monotonic()
    again = run_grid(grid_file, out, notebooks=TOYS, progress=False)
    assert time.monotonic() - start < 3
    assert again.ran == [] and len(again.skipped) == 4 and len(counter.read_text().splitlines()) == 4
    assert again.summary == report.summary
    assert summarize_grid(out).results == report.results  # re-read from disk, nothing run


@pytest.mark.notebook
@pytest.mark.usefixtures("python3_kernel")
def test_grid_parallel_jobs_from_base_run(tmp_path, capsys):
    base_run = tmp_path / "demo"  # e.g. the demo run: its data/ is shared, setup notebooks are not run
    run_notebooks(base_run, [MAKE], {"value": 10.0}, progress=False)
    grid_file = write_grid(tmp_path / "toy.yaml", tmp_path / "calls.txt")
    report = run_grid(grid_file, tmp_path / "out", jobs=2, notebooks=TOYS, seeds=[5], base_run=base_run)
    assert sorted(report.ran) == ["full/seed5", "scaled/seed5"]
    assert {r["variant"]: r["use.result.mean"] for r in report.summary} == {"full": 25.0, "scaled": 35.0}
    assert len(read_csv(tmp_path / "out" / "results.csv")) == 2 and not (tmp_path / "out" / "_setup").exists()
    assert (tmp_path / "out" / "full" / "seed5" / "config.yaml").read_text() == (base_run / "config.yaml").read_text()
    out = capsys.readouterr().out  # the workers' progress lines are relayed
    assert "full/seed5 [1/1] 02_use … done in " in out and "scaled/seed5 [1/1] 02_use … done in " in out


def test_grid_with_typo_keys_is_config_error(tmp_path):
    bad_top = write_grid(tmp_path / "a.yaml", variantz={"x": {}})
    with pytest.raises(ConfigError, match=r"unknown grid key\(s\) 'variantz'; valid keys: name, description, setup"):
        load_grid(bad_top)
    bad_variant = write_grid(tmp_path / "b.yaml", variants={"full": {"overides": ["disc.binary=false"]}})
    with pytest.raises(
        ConfigError, match=r"variants.full: unknown key\(s\) 'overides'; valid keys: overrides, parameters"
    ):
        load_grid(bad_variant)
    with pytest.raises(ConfigError, match="b.yaml"):
        load_grid(bad_variant)
    with pytest.raises(ConfigError, match="base.seed is not allowed"):
        load_grid(write_grid(tmp_path / "c.yaml", base={"seed": 1}))


def test_grid_checks_everything_before_running(tmp_path):
    counter = tmp_path / "calls.txt"
    bad_override = write_grid(
        tmp_path / "a.yaml", counter, variants={"full": {}, "typo": {"overrides": ["disc.treshold=0.3"]}}
    )
    with pytest.raises(ConfigError, match=r"variants.typo: .*unknown config key 'disc.treshold'"):
        run_grid(bad_override, tmp_path / "out_a", notebooks=TOYS, progress=False)
    bad_param = write_grid(tmp_path / "b.yaml", counter, variants={"x": {"parameters": {"scael": 3.0}}})
    with pytest.raises(ConfigError, match=r"scael declared by no notebook; parameters per notebook: 02_use: run_dir"):
        run_grid(bad_param, tmp_path / "out_b", notebooks=TOYS, progress=False)
    with pytest.raises(ConfigError, match="notebook '02_usee' not found"):
        run_grid(write_grid(tmp_path / "c.yaml", notebooks=["02_usee"]), tmp_path / "out_c", notebooks=TOYS)
    assert not counter.exists() and not (tmp_path / "out_a").exists() and not (tmp_path / "out_b").exists()


@pytest.mark.notebook
@pytest.mark.usefixtures("python3_kernel")
def test_output_folder_of_another_grid_is_refused(tmp_path):
    out = tmp_path / "out"
    first = write_grid(tmp_path / "first.yaml", seeds=[0], variants={"full": {}}, setup=[], notebooks=["03_fail"])
    with pytest.raises(Sim2RealError, match="1 of 1 run"):  # GridFailure: the folder is claimed all the same
        run_grid(first, out, notebooks=TOYS, progress=False)
    assert read_csv(out / "results.csv")[0]["status"] == "failed"
    other = write_grid(tmp_path / "other.yaml", name="toy2", seeds=[0], variants={"full": {}}, setup=[])
    with pytest.raises(Sim2RealError) as info:
        run_grid(other, out, notebooks=TOYS, progress=False)
    msg = str(info.value)
    assert (
        "belongs to grid 'toy'" in msg and "not to grid 'toy2'" in msg and "first.yaml" in msg and "other.yaml" in msg
    )
    assert not (out / "full" / "seed0" / "notebooks" / "02_use.ipynb").exists()


# ---------------------------------------------------------------------------- hygiene
def _toy_nb(*cells, params='run_dir = ""\npreset = "tiny"\nquick = False\nseed = 0\noverrides = []\n'):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if params is not None:
        p = nbformat.v4.new_code_cell(params)
        p.metadata["tags"] = ["parameters"]
        nb.cells.append(p)
    nb.cells += [nbformat.v4.new_code_cell(c) if isinstance(c, str) else c for c in cells]
    return nb


def _check(tmp_path, nb) -> list[str]:
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return check_notebook(path)


def test_check_notebook_clean(tmp_path):
    for toy in (MAKE, USE, FAIL, SLEEP):
        assert check_notebook(toy) == []
    assert _check(tmp_path, _toy_nb("%matplotlib inline\nimport math\nx = [math.pi for _ in range(3)]")) == []


def test_check_notebook_catches_each_problem(tmp_path):
    executed = nbformat.v4.new_code_cell("print(1)")
    executed.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    executed.execution_count = 1
    problems = _check(tmp_path, _toy_nb(executed))
    assert any("cell 1: outputs committed" in p for p in problems)
    assert any("cell 1: execution_count committed" in p for p in problems)

    problems = _check(tmp_path, _toy_nb("def helper(x):\n    return x", "class Box:\n    pass"))
    assert any("cell 1: `def helper`" in p for p in problems) and any("cell 2: `class Box`" in p for p in problems)

    assert any("0 cells tagged 'parameters'" in p for p in _check(tmp_path, _toy_nb("x = 1", params=None)))
    twice = _toy_nb()
    twice.cells.append(nbformat.v4.new_code_cell("steps = 1", metadata={"tags": ["parameters"]}))
    assert any("2 cells tagged 'parameters' (cells [0, 1])" in p for p in _check(tmp_path, twice))

    problems = _check(tmp_path, _toy_nb(params='run_dir = ""\nquick = True\n'))
    assert any("lacks common parameter(s): preset, seed, overrides" in p for p in problems)

    bad_params = 'run_dir = ""\npreset = "tiny"\nquick = False\nseed = 0\noverrides = []\nsteps = 10 * 2\nimport os\n'
    problems = _check(tmp_path, _toy_nb(params=bad_params))
    assert any("`steps = 10 * 2` is not a literal" in p for p in problems)
    assert any("`import os` is not `name = <literal>`" in p for p in problems)


# ---------------------------------------------------------------------------- the run report
def _png(color=(200, 30, 30)) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(buf, format="PNG")
    return buf.getvalue()


def _executed_notebook(path: Path, png: bytes) -> None:
    """A tiny executed notebook: a heading, a cell that printed, a cell that displayed one PNG."""
    import base64

    nb = _toy_nb("print('hi')", "fig")
    nb.cells.insert(1, nbformat.v4.new_markdown_cell("## Loss curve\nhow the loss falls"))
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    nb.cells[3].outputs = [
        nbformat.v4.new_output(
            "display_data", data={"image/png": base64.b64encode(png).decode(), "text/plain": "<Figure>"}
        )
    ]
    nbformat.write(nb, path)


def _fake_run(run_dir: Path) -> bytes:
    """A run folder as the six notebooks leave it, written by hand: metrics.json of 02-05 (numbers of a real
    quick run), run.json (02, 04, 05 ok, 03 failed, 06 not run), one executed notebook with a PNG."""
    nb_dir = run_dir / "notebooks"
    nb_dir.mkdir(parents=True)
    metrics = {
        "02_stage1": {
            "w1_mm": 42.587,
            "w1_cad_mm": 64.286,
            "hole_rate": 0.0,
            "hole_rate_real": 0.1035,
            "train": {"loss": 0.184},
        },
        "03_discriminator": {
            "val_auc": 0.92285,
            "acc_stage1": 0.6302,
            "train": {"flag_rate": 0.6276},
            "val": {"flag_rate": 0.6302, "acc_real": 0.9167},
        },
        "04_stage2": {
            "w1_stage1_mm": 43.046,
            "w1_stage1_long_mm": 48.629,
            "w1_stage2_mm": 49.183,
            "w1_cad_mm": 64.286,
            "acc_stage1": 0.66146,
            "acc_stage1_long": 0.43229,
            "acc_stage2": 0.51042,
            "acc_real": 0.08333,
            "flagged_train": 0.6276,
            "per_stage": {"stage1": {"hole_rate": 0.012, "hole_rate_real": 0.1035}, "stage2": {"hole_rate": 0.05}},
        },
        "05_benchmark": {
            "split": "val",
            "frames": 32,
            "scenes": ["s0012", "s0013", "s0014", "s0015"],
            "simulators": {  # summary.json sorts its keys
                "cad": {
                    "label": "CAD (w/o sim)",
                    "w1_mm": {"mean": 64.29},
                    "hole_all_pct": {"mean": 0.0},
                    "disc_fake_pct": {"mean": 19.8},
                    "c2st_auc": {"mean": 0.99},
                },
                "pix2pix": {"label": "Pix2Pix", "w1_mm": {"mean": 1448.6}, "disc_fake_pct": {"mean": 0.0}},
                "real": {"label": "real (reference)", "w1_mm": {"mean": 0.0}, "disc_fake_pct": {"mean": 8.3}},
                "stage1": {
                    "label": "Stage-I",
                    "w1_mm": {"mean": 42.59},
                    "disc_fake_pct": {"mean": 63.0},
                    "c2st_auc": {"mean": 0.852},
                },
            },
        },
    }
    for name, m in metrics.items():
        (nb_dir / f"{name}.metrics.json").write_text(json.dumps(m))
    params = {"run_dir": str(run_dir), "preset": "tiny", "quick": False, "seed": 0, "overrides": []}
    entries = {
        "02_stage1": {"name": "02_stage1", "status": "ok", "duration_s": 125.0, "error": None, "parameters": params},
        "03_discriminator": {
            "name": "03_discriminator",
            "status": "failed",
            "duration_s": 12.0,
            "error": "notebook 03_discriminator failed in cell 4: ValueError: <no patches>",
            "parameters": params,
        },
        "04_stage2": {"name": "04_stage2", "status": "ok", "duration_s": 800.0, "error": None, "parameters": params},
        "05_benchmark": {
            "name": "05_benchmark",
            "status": "ok",
            "duration_s": 400.0,
            "error": None,
            "parameters": params,
        },
        "06_ablations": {
            "name": "06_ablations",
            "status": "not run",
            "duration_s": None,
            "error": None,
            "parameters": params,
        },
    }
    (nb_dir / "run.json").write_text(json.dumps({"order": list(entries), "notebooks": entries}))
    png = _png()
    _executed_notebook(nb_dir / "02_stage1.ipynb", png)
    (run_dir / "config.yaml").write_text("preset: tiny\n")
    (run_dir / "provenance.json").write_text("{}")
    (run_dir / "benchmark" / "figures").mkdir(parents=True)
    (run_dir / "benchmark" / "figures" / "w1_mm.png").write_bytes(_png((0, 0, 200)))
    return png


def _cells(page: str, first_cell: str) -> list[str]:
    """The text of the cells after the first one of the table row whose first cell holds `first_cell`."""
    row = re.search(r"<tr[^>]*><td class=\"l\"[^>]*>" + re.escape(first_cell) + r"(.*?)</tr>", page, re.S)
    assert row, f"no row {first_cell!r}"
    return [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)]


def test_run_report_story_notebooks_figures_links(tmp_path):
    run_dir = tmp_path / "run"
    png = _fake_run(run_dir)
    page = write_index(run_dir).read_text()

    # (a) the story: notebook 04's numbers first, then 02 / 03 / the benchmark; "—" where nothing measured it
    story = page[page.index("The method in numbers") : page.index("Benchmark (notebook 05)")]
    assert _cells(story, "<b>clean CAD</b>") == ["64.3", "0.0", "19.8", "0.990"]  # holes, fake, AUC: benchmark
    # the AUC is the benchmark's two-sample test, never 03's val AUC (0.923: another discriminator, other frames)
    assert _cells(story, "<b>Stage-I</b>") == ["43.0", "1.2", "66.1", "0.852"]
    assert _cells(story, "<b>Stage-I control</b>") == ["48.6", "—", "43.2", "—"]
    assert _cells(story, "<b>Stage-II</b>") == ["49.2", "5.0", "51.0", "—"]
    assert _cells(story, "<b>real capture</b>") == ["—", "10.3", "8.3", "—"]
    assert (
        'title="04_stage2: w1_stage1_mm"' in story and 'title="05_benchmark: simulators.stage1.c2st_auc.mean"' in story
    )
    assert "train 62.8 %, val 63.0 %" in story  # 03's flagged shares
    # the benchmark in the SIMULATORS order, the reference last, the unconverged GAN marked and out of the best
    bench = page[page.index("Benchmark (notebook 05)") : page.index("The notebooks")]
    assert "every simulator on the val split (32 frames in 4 scenes)" in bench  # the frames the table scored
    assert [m for m in re.findall(r'<td class="l"[^>]*>([^<]+)</td>', bench)] == [
        "CAD (w/o sim)",
        "Pix2Pix (unconverged)",
        "Stage-I",
        "real (reference)",
    ]
    assert '<tr class="unconv"><td class="l" title="W1 1448.6 mm &gt; clean CAD&#x27;s 64.3 mm">' in bench
    assert _cells(bench, "CAD (w/o sim)")[-1] == "19.8" and '<td class="num best">19.8</td>' in bench

    # (c) each notebook: status, time, expected range (tiny preset), three headline numbers, the error
    nbs = page[page.index("The notebooks") : page.index("<h2>Figures")]
    row = next(r for r in re.findall(r"<tr>(.*?)</tr>", nbs, re.S) if ">02_stage1</a>" in r)
    stage1 = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    from sim2real_kit.runner.notebooks import _fmt_clock

    lo, hi = EXPECTED_SECONDS["tiny"]["02_stage1"]
    assert stage1[:5] == ["1", "02_stage1", "ok", "2:05", f"{_fmt_clock(lo)}-{_fmt_clock(hi)}"]
    assert "Stage-I W1: 42.6 mm vs clean CAD 64.3 mm" in stage1[5] and "final loss: 0.184" in stage1[5]
    assert EXPECTED_SECONDS["tiny"]["04_stage2"][1] < 800
    assert '<span class="slow" title="slower than expected">13:20</span>' in nbs  # 04: 800 s > its high end
    assert 'class="status failed">failed<' in nbs and "ValueError: &lt;no patches&gt;" in nbs
    assert 'class="status notrun">not run<' in nbs

    # (b) figures: the notebook's PNG output extracted and shown as a thumbnail linking to the full image
    fig = run_dir / "notebooks" / "figures" / "02_1.png"
    assert fig.read_bytes() == png and not (run_dir / "notebooks" / "figures" / "02_2.png").exists()
    assert '<a href="notebooks/figures/02_1.png"><img src="notebooks/figures/02_1.png"' in page
    assert "02_1 · Loss curve" in page
    assert '<img src="benchmark/figures/w1_mm.png"' in page  # what the run wrote, folded

    # (d) links: the notebook's HTML and executed copy, config.yaml, provenance.json
    for href in ("notebooks/02_stage1.html", "notebooks/02_stage1.ipynb", "config.yaml", "provenance.json"):
        assert f'href="{href}"' in page, href
    assert 'href="notebooks/03_discriminator.html"' not in page  # failed, no executed copy
    assert "http://" not in page and "https://" not in page and "<script" not in page  # offline
    # a second report re-extracts (no stale NN_k.png left behind)
    (run_dir / "notebooks" / "figures" / "02_7.png").write_bytes(png)
    write_index(run_dir)
    assert sorted(p.name for p in (run_dir / "notebooks" / "figures").iterdir()) == ["02_1.png"]


def test_story_table_from_stage1_alone():
    from sim2real_kit.runner.story import headlines, story_table

    rows = story_table({"02_stage1": {"w1_mm": 20.3, "w1_cad_mm": 54.8, "hole_rate": 0.1, "hole_rate_real": 0.12}})
    by_key = {r["key"]: r for r in rows}
    assert [r["key"] for r in rows] == ["cad", "stage1", "stage1_long", "stage2", "real"]
    assert (by_key["cad"]["w1"], by_key["stage1"]["w1"], by_key["stage1"]["holes"]) == (54.8, 20.3, 10.0)
    assert by_key["stage1"]["w1_source"] == "02_stage1: w1_mm" and by_key["stage2"]["w1"] is None
    assert headlines("04_stage2", {})[0] == ("Stage-II W1", "—", "w1_stage2_mm")
    assert headlines("99_new", {"a": 1, "b": "x", "c": {"d": 2.5}}) == [("a", "1", "a"), ("c.d", "2.5", "c.d")]


def test_screenshots_script_without_chromium_says_how_to_install(tmp_path):
    script = Path(__file__).resolve().parent.parent / "scripts" / "screenshots.py"
    (tmp_path / "run").mkdir()
    env = {"PATH": str(tmp_path / "empty-bin"), "HOME": str(tmp_path)}
    empty = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run")], capture_output=True, text=True, env=env
    )
    assert empty.returncode == 2 and "no index.html" in empty.stderr  # nothing to shoot: says how to write it
    (tmp_path / "run" / "index.html").write_text("<html></html>")
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run")], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2 and "apt-get install -y chromium" in result.stderr, result.stderr


def test_flatten_metrics():
    assert flatten_metrics({"a": {"b": 1, "c": {"d": 2.5}}, "e": "x"}) == {"a.b": 1, "a.c.d": 2.5, "e": "x"}
    assert json.loads(json.dumps(flatten_metrics({}))) == {}


def test_demo_grid_runs_its_variants_at_once_without_the_control(tmp_path):
    """Notebook 06's demo grid: 04's control (Stage-I trained on) is off, since none of the grid's metrics reads
    it, and 06 runs the two variants as two worker processes by default (benchmarks/bench_grid.py: 87 s vs 166 s
    one after the other on the 2-core machine, 2026-12-06)."""
    from sim2real_kit.config import CONFIG_DIR
    from sim2real_kit.runner.grid import _check_grid, _grid_jobs, _grid_notebooks, load_grid
    from sim2real_kit.runner.notebooks import NOTEBOOK_DIR, notebook_parameters

    grid = load_grid(CONFIG_DIR / "ablations" / "demo.yaml")
    main_paths, setup_paths = _grid_notebooks(grid, None)
    _check_grid(grid, main_paths, setup_paths)  # `control` is a parameter a grid notebook declares
    todo, _ = _grid_jobs(grid, tmp_path, main_paths, None, timeout_s=None, kernel_name="python3", progress=False)
    assert [job["parameters"]["control"] for job in todo] == [False, False]
    assert not any("long" in m or "control" in m for m in grid.metrics)
    assert notebook_parameters(NOTEBOOK_DIR / "06_ablations.ipynb")["jobs"] == "2"


def test_grid_workers_started_together_share_the_cores(tmp_path, monkeypatch):
    """Workers that start at once each see every core free (`jobs.adapt_threads`) and took 2 threads each on the
    2-core machine: notebook 06's Stage-I ran at 0.67 img/s (6:07 instead of ~1:20). The grid gives each worker
    its share of the cores through SIM2REAL_THREADS, unless the user fixed the threads."""
    import io
    import subprocess

    from sim2real_kit.runner import jobs as rjobs

    envs = []

    class FakeWorker:
        returncode = 0

        def __init__(self):
            self.stdout = io.StringIO("")

        def poll(self):
            return 0

        def terminate(self):
            pass

    def fake_popen(cmd, **kw):
        envs.append(kw.get("env"))
        return FakeWorker()

    monkeypatch.setattr(subprocess, "Popen", fake_popen)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("SIM2REAL_THREADS", raising=False)
    jobs = [{"label": f"v{i}/seed0", "run_dir": str(tmp_path / f"v{i}")} for i in range(3)]

    def threads(cores: int, n_jobs: int) -> list:
        envs.clear()
        monkeypatch.setattr("sim2real_kit.jobs.usable_cores", lambda: cores)
        outcomes = rjobs._run_jobs(jobs, n_jobs)
        assert [o["status"] for o in outcomes] == ["failed"] * 3  # the fake workers write no result
        return [None if e is None else e.get("SIM2REAL_THREADS") for e in envs]

    assert threads(2, 2) == ["1", "1", "1"]
    assert threads(8, 2) == ["4", "4", "4"]
    assert threads(8, 3) == ["2", "2", "2"]
    assert threads(2, 3) == ["1", "1", "1"]
    monkeypatch.setenv("SIM2REAL_THREADS", "2")  # fixed by the user: kept
    assert threads(2, 2) == ["2", "2", "2"]
    monkeypatch.setenv("SIM2REAL_THREADS", "auto")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # fixed by the user: SIM2REAL_THREADS left as it is
    assert threads(2, 2) == ["auto", "auto", "auto"]


def test_grid_refuses_a_bad_thread_setting_before_starting_workers(monkeypatch):
    """The grid and `jobs.adapt_threads` read the user's thread setting through one function
    (`jobs.threads_fixed_by_user`): a SIM2REAL_THREADS that is neither a whole number nor "auto" is refused by the
    grid with the variable's name, not passed on to fail in every worker."""
    from sim2real_kit import jobs
    from sim2real_kit.errors import ConfigError
    from sim2real_kit.runner import jobs as rjobs

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for value, fixed in (("auto", False), ("3", True), (" AUTO ", False)):
        monkeypatch.setenv("SIM2REAL_THREADS", value)
        assert jobs.threads_fixed_by_user() is fixed
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("SIM2REAL_THREADS", "auto")
    assert jobs.threads_fixed_by_user() and rjobs._worker_env(2)["SIM2REAL_THREADS"] == "auto"
    for bad in ("abc", "0", "1.5"):
        monkeypatch.setenv("SIM2REAL_THREADS", bad)
        with pytest.raises(ConfigError, match="SIM2REAL_THREADS"):
            rjobs._worker_env(2)
