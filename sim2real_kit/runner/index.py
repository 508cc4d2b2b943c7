"""The run report of a run folder: :func:`write_index` renders every executed notebook to HTML (nbconvert),
extracts the figures the notebooks displayed into `notebooks/figures/NN_k.png` and writes
`run_dir/index.html`, one offline page (no CDN, no script):

1. the method's story in numbers (clean CAD → Stage-I → Stage-I control → Stage-II, against the real
   capture: residual W1, hole rate, share judged fake by the frozen Stage-I discriminator, two-sample AUC;
   `runner.story`), and the benchmark of notebook 05 in six columns, unconverged baselines marked;
2. every notebook: status, time (and the expected range), three headline numbers, links to its HTML
   render and executed copy; the error of a failed one;
3. the figures as thumbnails linking to the full image: those the notebooks displayed, then the PNG
   files the run wrote (`benchmark/figures/`, `benchmark/real_sample/figures/`, ...);
4. links to config.yaml, provenance.json and the benchmark's files; every metric of every notebook
   (nested keys dotted by :func:`flatten_metrics`) in a folded list per notebook.
"""

from __future__ import annotations

import base64
import contextlib
import html
import math
import time
import warnings
from pathlib import Path
from typing import Any

from sim2real_kit.errors import Sim2RealError
from sim2real_kit.io import atomic_write_bytes, atomic_write_text
from sim2real_kit.report import format_value
from sim2real_kit.runner.notebooks import _fmt_clock, _read_json, expected_seconds
from sim2real_kit.runner.story import (
    MISSING,
    STORY_COLUMNS,
    benchmark_table,
    flagged_shares,
    fmt_number,
    headlines,
    story_table,
)

FIGURE_DIR = "figures"  # under run_dir/notebooks/: NN_k.png extracted from the executed notebooks
# PNG files a run writes, shown after the notebooks' figures (globs relative to the run folder)
RUN_FIGURES = (
    ("benchmark (notebook 05)", "benchmark/figures/*.png"),
    ("real sample (notebook 05)", "benchmark/real_sample/figures/*.png"),
    ("ablations (notebook 06)", "ablations/*/figures/*.png"),
)
RUN_FILES = (  # linked in the page's header when present
    ("config.yaml", "config.yaml"),
    ("provenance.json", "provenance.json"),
    ("benchmark results.md", "benchmark/results.md"),
    ("results.csv", "benchmark/results.csv"),
    ("summary.json", "benchmark/summary.json"),
    ("run.json", "notebooks/run.json"),
)


def flatten_metrics(metrics: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}, "c": 2} -> {"a.b": 1, "c": 2} (nested dicts joined with dots)."""
    if not isinstance(metrics, dict):
        return {prefix.rstrip("."): metrics} if prefix else {}
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _index_entries(run_dir: Path) -> list[dict]:
    """Status of every notebook of a run, in run order: run.json first, then executed copies it
    does not list (status and duration from papermill's metadata)."""
    nb_dir = run_dir / "notebooks"
    run_json = _read_json(nb_dir / "run.json") or {}
    entries = dict(run_json.get("notebooks", {})) if isinstance(run_json, dict) else {}
    order = [n for n in run_json.get("order", sorted(entries)) if n in entries] if entries else []
    for executed in sorted(nb_dir.glob("*.ipynb")):
        if executed.stem in entries:
            continue
        meta = (_read_json(executed) or {}).get("metadata", {}).get("papermill", {})
        entries[executed.stem] = {
            "name": executed.stem,
            "status": "failed" if meta.get("exception") else "ok",
            "duration_s": meta.get("duration"),
            "error": None,
        }
        order.append(executed.stem)
    return [entries[k] for k in order]


def _render_html(executed: Path, target: Path) -> None:
    """Executed notebook -> standalone HTML (nbconvert HTMLExporter), skipped when up to date."""
    if target.is_file() and target.stat().st_mtime >= executed.stat().st_mtime:
        return
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    atomic_write_text(target, body)


# ====================================================================== figures of the notebooks
def _heading(source: str) -> str | None:
    for line in source.splitlines():
        if line.lstrip().startswith("#"):
            return line.lstrip("# ").strip()
    return None


def extract_figures(executed: Path, out_dir: Path) -> list[dict]:
    """The image/png outputs of an executed notebook as files `out_dir/NN_k.png` (NN: the notebook's number
    or name, k = 1, 2, ... in output order); older `NN_*.png` files are removed first. Returns one dict per
    figure: path, cell (0-based index in the executed notebook), caption (the heading of the markdown cell
    above, else the notebook's title)."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    prefix = executed.stem.split("_", 1)[0] if executed.stem[:2].isdigit() else executed.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob(f"{prefix}_*.png"):
        if old.stem[len(prefix) + 1 :].isdigit():
            old.unlink()
    title, heading, figures = None, None, []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            found = _heading(cell.source)
            if found:
                heading = found
                title = title or found
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {}) if output.get("output_type") in ("display_data", "execute_result") else {}
            png = data.get("image/png")
            if not png:
                continue
            target = out_dir / f"{prefix}_{len(figures) + 1}.png"
            with contextlib.suppress(ValueError):
                atomic_write_bytes(target, base64.b64decode("".join(png) if isinstance(png, list) else png))
                figures.append({"path": target, "cell": i, "caption": heading or title or executed.stem})
    return figures


def _run_figures(run_dir: Path) -> list[tuple[str, list[Path]]]:
    groups = []
    for label, pattern in RUN_FIGURES:
        paths = sorted(run_dir.glob(pattern))
        if paths:
            groups.append((label, paths))
    return groups


# ====================================================================== rows of the report
def _index_rows(run_dir: Path) -> list[dict]:
    """One row per notebook of the run: name, status, duration, error, the HTML render (written
    here when out of date) and executed copy when they exist, metrics, parameters, figures."""
    nb_dir = run_dir / "notebooks"
    rows = []
    for entry in _index_entries(run_dir):
        name = entry["name"]
        executed = nb_dir / f"{name}.ipynb"
        status = entry.get("status") or "not run"
        ran = executed.is_file() and status != "not run"
        html_path = nb_dir / f"{name}.html"
        figures: list[dict] = []
        if ran:
            try:
                _render_html(executed, html_path)
            except Exception as e:  # a broken notebook must not hide the others
                warnings.warn(f"could not render {executed} to HTML: {e}", stacklevel=3)
            try:
                figures = extract_figures(executed, nb_dir / FIGURE_DIR)
            except Exception as e:
                warnings.warn(f"could not extract the figures of {executed}: {e}", stacklevel=3)
        metrics_path = nb_dir / f"{name}.metrics.json"
        metrics = _read_json(metrics_path) if metrics_path.is_file() and status != "not run" else None
        rows.append(
            {
                "name": name,
                "status": status,
                "duration_s": entry.get("duration_s"),
                "error": entry.get("error"),
                "parameters": entry.get("parameters") or {},
                "html": html_path if html_path.is_file() and status != "not run" else None,
                "ipynb": executed if ran else None,
                "metrics_raw": metrics if isinstance(metrics, dict) else None,
                "metrics": flatten_metrics(metrics) if isinstance(metrics, dict) else {},
                "figures": figures,
            }
        )
    return rows


# ====================================================================== HTML
_CSS = """
:root { --fg: #1f2328; --muted: #656d76; --line: #d8dee4; --bg2: #f6f8fa; --accent: #1a5fb4;
  --ok: #137333; --bad: #c5221f; --warn: #9a6700; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: var(--fg);
  background: #fff; line-height: 1.45; }
main { max-width: 1240px; margin: 0 auto; padding: 1.6em 2em 3em; }
h1 { font-size: 1.55em; margin: 0 0 .15em; } h2 { font-size: 1.2em; margin: 1.8em 0 .5em;
  padding-bottom: .25em; border-bottom: 1px solid var(--line); }
h3 { font-size: 1em; margin: 1.2em 0 .4em; color: var(--muted); }
.sub { color: var(--muted); margin: 0 0 .6em; font-size: .92em; }
.files a { display: inline-block; margin: .15em .5em .15em 0; padding: .1em .55em; border: 1px solid var(--line);
  border-radius: 999px; font-size: .85em; background: var(--bg2); }
p.lead { max-width: 60em; margin: .3em 0 .8em; }
.wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: .9em; }
th, td { border-bottom: 1px solid var(--line); padding: .42em .7em; text-align: right; vertical-align: top; }
th { background: var(--bg2); font-weight: 600; border-top: 1px solid var(--line); }
td.l, th.l { text-align: left; } td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
td .note { display: block; color: var(--muted); font-size: .82em; max-width: 34em; }
tr.ref td { color: var(--muted); background: #fbfbfb; }
tr.unconv td { color: #8c959f; } tr.unconv td.l { color: var(--warn); }
td.best { font-weight: 700; }
table.story th { max-width: 12em; } table.story td.num { min-width: 6em; }
.unit { color: var(--muted); font-weight: normal; font-size: .85em; }
.status { display: inline-block; padding: .05em .55em; border-radius: 999px; font-size: .82em; font-weight: 600; }
.status.ok { background: #dafbe1; color: var(--ok); } .status.failed { background: #ffebe9; color: var(--bad); }
.status.notrun { background: var(--bg2); color: var(--muted); }
.slow { color: var(--warn); } .muted { color: var(--muted); }
.nb td { vertical-align: middle; } .nb .hl { text-align: left; font-size: .88em; }
.nb .hl span { display: block; white-space: nowrap; } .nb .hl b { font-variant-numeric: tabular-nums; }
.nb .hl i { color: var(--muted); font-style: normal; }
pre.err { background: #fff4f4; border: 1px solid #f0c0c0; padding: .7em; white-space: pre-wrap; font-size: .85em; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 14px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 6px; background: #fff; }
figure img { width: 100%; height: 150px; object-fit: contain; display: block; background: #fff; }
figcaption { font-size: .78em; color: var(--muted); margin-top: 4px; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; }
details { margin: .35em 0; } summary { cursor: pointer; color: var(--accent); }
details table { margin: .4em 0 .8em; } details td { font-size: .9em; }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
.legend { color: var(--muted); font-size: .85em; margin: .4em 0 0; max-width: 62em; }
"""


def _esc(text: Any) -> str:
    return html.escape(str(text))


def _rel(run_dir: Path, path: Path) -> str:
    return html.escape(path.relative_to(run_dir).as_posix(), quote=True)


def _link(run_dir: Path, path: Path | None, text: str) -> str:
    if path is None:
        return _esc(text)
    return f'<a href="{_rel(run_dir, path)}">{_esc(text)}</a>'


def _run_settings(rows: list[dict]) -> str:
    """preset · quick · seed · overrides of the run (from the parameters run.json recorded)."""
    params: dict = {}
    for r in rows:
        for k, v in r["parameters"].items():
            params.setdefault(k, v)
    parts = []
    if "preset" in params:
        parts.append(f"preset <b>{_esc(params['preset'])}</b>")
    if params.get("quick"):
        parts.append("<b>quick</b>")
    if "seed" in params:
        parts.append(f"seed {_esc(params['seed'])}")
    if params.get("overrides"):
        parts.append("overrides " + _esc(" ".join(map(str, params["overrides"]))))
    return " · ".join(parts)


def _story_section(metrics: dict[str, Any]) -> str:
    rows = story_table(metrics)
    if not any(r[col] is not None for r in rows for col, *_ in STORY_COLUMNS):
        return ""
    head = "".join(
        f"<th>{_esc(label)}{f' <span class=unit>({_esc(unit)})</span>' if unit else ''}"
        f"{' ↓' if better == 'lower' else ''}</th>"
        for _, label, unit, better, _ in STORY_COLUMNS
    )
    body = []
    for r in rows:
        cells = []
        for col, _, _, _, digits in STORY_COLUMNS:
            title = f' title="{_esc(r[f"{col}_source"])}"' if r[f"{col}_source"] else ""
            cells.append(f'<td class="num"{title}>{_esc(fmt_number(r[col], digits))}</td>')
        css = ' class="ref"' if r["key"] == "real" else ""
        body.append(
            f'<tr{css}><td class="l"><b>{_esc(r["label"])}</b><span class="note">{_esc(r["note"])}</span></td>'
            f"{''.join(cells)}</tr>"
        )
    shares = flagged_shares(metrics)
    flagged = ""
    if shares:
        flagged = (
            " Stage-I patches the discriminator flagged (Stage-II's loss is re-weighted on them): "
            + ", ".join(f"{split} {v:.1f} %" for split, v in shares.items())
            + "."
        )
    return f"""<h2>The method in numbers</h2>
<p class="lead">Each row turns the same validation CAD frames into depth; lower residual W1 and a lower share
judged fake are closer to the real capture. The control tells whether Stage-II's change comes from the
re-weighting or just from more training steps.</p>
<div class="wrap"><table class="story">
<tr><th class="l">simulated depth</th>{head}</tr>
{chr(10).join(body)}
</table></div>
<p class="legend">Hover a number for the notebook and key it comes from; {MISSING}: not measured in this run.{flagged}</p>
"""


def _benchmark_section(run_dir: Path, metrics: dict[str, Any]) -> str:
    summary = next((m for name, m in metrics.items() if name.endswith("_benchmark") and isinstance(m, dict)), None)
    if summary is None:
        return ""
    try:
        from sim2real_kit.benchmark.tables import baseline_losses

        table = benchmark_table(summary, baseline_losses(run_dir))
    except Exception as e:  # a report must not fail on one section
        warnings.warn(f"could not build the benchmark table: {e}", stacklevel=3)
        return ""
    if table is None:
        return ""
    head = "".join(f"<th>{_esc(c.label)}</th>" for c in table["columns"])
    body = []
    for r in table["rows"]:
        css = "ref" if r["reference"] else "unconv" if r["unconverged"] else ""
        title = f' title="{_esc(r["unconverged"])}"' if r["unconverged"] else ""
        cells = "".join(f'<td class="num{" best" if best else ""}">{_esc(text)}</td>' for text, best in r["cells"])
        body.append(f'<tr class="{css}"><td class="l"{title}>{_esc(r["label"])}</td>{cells}</tr>')
    results = run_dir / "benchmark" / "results.md"
    more = f" The full table: {_link(run_dir, results, 'benchmark/results.md')}." if results.is_file() else ""
    split, frames, scenes = summary.get("split"), summary.get("frames"), summary.get("scenes") or ()
    where = (
        f"the {_esc(split)} split ({frames} frames in {len(scenes)} scenes)"
        if split and frames
        else "the frames of benchmark/results.md"
    )  # the split the table scored (the downstream task and the two-sample test train on the benchmark split)
    return f"""<h3>Benchmark (notebook 05): every simulator on {where}, mean over seeds</h3>
<div class="wrap"><table>
<tr><th class="l">simulator</th>{head}</tr>
{chr(10).join(body)}
</table></div>
<p class="legend">Best value of each column in bold (the real reference and unconverged baselines do not
compete). "(unconverged)": a trained simulator whose W1 is above clean CAD's or whose training loss did not
fall.{more}</p>
"""


def _expected(r: dict) -> tuple[float, float] | None:
    params = r["parameters"]
    return expected_seconds(r["name"], params.get("preset", "tiny"), bool(params.get("quick", False)))


def _notebook_section(run_dir: Path, rows: list[dict]) -> str:
    with_expected = any(_expected(r) for r in rows)  # no such column for quick runs
    body = []
    for i, r in enumerate(rows, start=1):
        css = {"ok": "ok", "failed": "failed"}.get(r["status"], "notrun")
        expected = _expected(r)
        dur = _fmt_clock(r["duration_s"]) if r["duration_s"] is not None else MISSING
        if r["duration_s"] is not None and expected is not None and r["duration_s"] > expected[1]:
            dur = f'<span class="slow" title="slower than expected">{dur}</span>'
        exp = f"{_fmt_clock(expected[0])}-{_fmt_clock(expected[1])}" if expected else ""
        hl = ""
        if r["metrics_raw"] is not None:
            hl = "".join(
                f'<span title="{_esc(key)}"><i>{_esc(label)}:</i> <b>{_esc(text)}</b></span>'
                for label, text, key in headlines(r["name"], r["metrics_raw"])
            )
        elif r["status"] == "ok":
            hl = "<span><i>no metrics.json</i></span>"
        links = [
            _link(run_dir, r["html"], "HTML") if r["html"] else "",
            _link(run_dir, r["ipynb"], ".ipynb") if r["ipynb"] else "",
        ]
        name = _link(run_dir, r["html"], r["name"]) if r["html"] else _esc(r["name"])
        exp_cell = f'<td class="num muted">{exp}</td>' if with_expected else ""
        body.append(
            f'<tr><td class="num">{i}</td><td class="l"><b>{name}</b></td>'
            f'<td class="l"><span class="status {css}">{_esc(r["status"])}</span></td>'
            f'<td class="num">{dur}</td>{exp_cell}'
            f'<td class="hl">{hl}</td><td class="l">{" · ".join(x for x in links if x)}</td></tr>'
        )
    errors = "".join(
        f'<h3>{_esc(r["name"])} failed</h3><pre class="err">{_esc(r["error"])}</pre>' for r in rows if r["error"]
    )
    exp_head = "<th>expected</th>" if with_expected else ""
    return f"""<h2>The notebooks</h2>
<div class="wrap"><table class="nb">
<tr><th>#</th><th class="l">notebook</th><th class="l">status</th><th>time</th>{exp_head}
<th class="l">headline numbers</th><th class="l">files</th></tr>
{chr(10).join(body)}
</table></div>
{errors}"""


def _figure(run_dir: Path, path: Path, caption: str) -> str:
    src = _rel(run_dir, path)
    return (
        f'<figure><a href="{src}"><img src="{src}" loading="lazy" alt="{_esc(caption)}"></a>'
        f'<figcaption title="{_esc(caption)}">{_esc(caption)}</figcaption></figure>'
    )


def _figures_section(run_dir: Path, rows: list[dict]) -> str:
    parts = []
    for r in rows:
        if r["figures"]:
            thumbs = "".join(_figure(run_dir, f["path"], f"{f['path'].stem} · {f['caption']}") for f in r["figures"])
            parts.append(f'<h3>{_esc(r["name"])}</h3>\n<div class="grid">{thumbs}</div>')
    written = _run_figures(run_dir)
    if written:  # mostly what notebook 05 displayed too: folded
        groups = "".join(
            f'<h3>{_esc(label)}</h3>\n<div class="grid">'
            + "".join(_figure(run_dir, p, p.relative_to(run_dir).as_posix()) for p in paths)
            + "</div>"
            for label, paths in written
        )
        n = sum(len(paths) for _, paths in written)
        parts.append(f"<details><summary>PNG files the run wrote ({n})</summary>{groups}</details>")
    if not parts:
        return ""
    return (
        '<h2>Figures</h2>\n<p class="legend">What the notebooks displayed (3D views and widgets are interactive: '
        "open the notebook's HTML); click a thumbnail for the full image.</p>\n" + "\n".join(parts)
    )


def _metrics_section(rows: list[dict]) -> str:
    parts = []
    for r in rows:
        if not r["metrics"]:
            continue
        cells = "".join(
            f'<tr><td class="l">{_esc(k)}</td><td class="num">{_esc(format_value(v))}</td></tr>'
            for k, v in r["metrics"].items()
        )
        parts.append(
            f"<details><summary>{_esc(r['name'])} · {len(r['metrics'])} values</summary>"
            f'<table><tr><th class="l">key</th><th>value</th></tr>{cells}</table></details>'
        )
    if not parts:
        return ""
    return "<h2>Every metric</h2>\n" + "\n".join(parts)


def _index_page(run_dir: Path, rows: list[dict]) -> str:
    """The run report of `_index_rows` (see the module docstring)."""
    metrics = {r["name"]: r["metrics_raw"] for r in rows if r["metrics_raw"] is not None}
    total = sum(r["duration_s"] or 0.0 for r in rows)
    n_ok = sum(r["status"] == "ok" for r in rows)
    links = [(label, rel) for label, rel in RUN_FILES if (run_dir / rel).is_file()]
    links += [
        (f"ablations {p.parent.name}/summary.md", p.relative_to(run_dir).as_posix())
        for p in sorted(run_dir.glob("ablations/*/summary.md"))
    ]
    files = "".join(f'<a href="{html.escape(rel, quote=True)}">{_esc(label)}</a>' for label, rel in links)
    settings = _run_settings(rows)
    failed = [r["name"] for r in rows if r["status"] == "failed"]
    alert = (
        f'<p><span class="status failed">failed</span> {_esc(", ".join(failed))}: see the error below.</p>'
        if failed
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>sim2real_kit run {_esc(run_dir.name)}</title>
<style>{_CSS}</style></head><body><main>
<h1>Run report: {_esc(run_dir.name)}</h1>
<p class="sub">{_esc(run_dir)} · {n_ok}/{len(rows)} notebooks ok · {_fmt_clock(total)} in total\
{" · " + settings if settings else ""} · written {time.strftime("%Y-%m-%d %H:%M")}</p>
<p class="files">{files}</p>
{alert}
{_story_section(metrics)}
{_benchmark_section(run_dir, metrics)}
{_notebook_section(run_dir, rows)}
{_figures_section(run_dir, rows)}
{_metrics_section(rows)}
</main></body></html>
"""


def write_index(run_dir: str | Path) -> Path:
    """Write the run report `run_dir/index.html` (see the module docstring): the story and benchmark tables,
    every notebook (status, time, headline numbers, HTML render and executed copy), the figures as
    thumbnails (the notebooks' PNG outputs extracted into `notebooks/figures/`), every metric."""
    run_dir = Path(run_dir).resolve()
    if not (run_dir / "notebooks").is_dir():
        raise Sim2RealError(
            "no notebooks/ folder: run the notebooks first (run_notebooks / `sim2real notebooks`)", run_dir
        )
    target = run_dir / "index.html"
    atomic_write_text(target, _index_page(run_dir, _index_rows(run_dir)))
    return target
