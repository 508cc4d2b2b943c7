"""The HTML index of a run folder: :func:`write_index` renders every executed notebook to HTML
(nbconvert) and writes `run_dir/index.html` with links, status, duration and one table of all
metrics (nested keys dotted by :func:`flatten_metrics`)."""

from __future__ import annotations

import html
import math
import time
import warnings
from pathlib import Path
from typing import Any

from sim2real_kit.errors import Sim2RealError
from sim2real_kit.io import atomic_write_text
from sim2real_kit.report import format_value
from sim2real_kit.runner.notebooks import _fmt_duration, _read_json


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


_CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; margin-bottom: .2em; } .sub { color: #666; margin-top: 0; }
.wrap { overflow-x: auto; } table { border-collapse: collapse; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .35em .6em; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; position: sticky; top: 0; } td.l, th.l { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
.ok { color: #137333; font-weight: 600; } .failed { color: #c5221f; font-weight: 600; }
.notrun { color: #888; } pre { background: #fff4f4; border: 1px solid #f0c0c0; padding: .6em; white-space: pre-wrap; }
a { color: #1a5fb4; text-decoration: none; } a:hover { text-decoration: underline; }
"""


def _render_html(executed: Path, target: Path) -> None:
    """Executed notebook -> standalone HTML (nbconvert HTMLExporter), skipped when up to date."""
    if target.is_file() and target.stat().st_mtime >= executed.stat().st_mtime:
        return
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    atomic_write_text(target, body)


def _index_rows(run_dir: Path) -> list[dict]:
    """One row per notebook of the run: name, status, duration, error, the HTML render (written
    here when out of date) and executed copy when they exist, flattened metrics."""
    nb_dir = run_dir / "notebooks"
    rows = []
    for entry in _index_entries(run_dir):
        name = entry["name"]
        executed = nb_dir / f"{name}.ipynb"
        status = entry.get("status") or "not run"
        html_path = nb_dir / f"{name}.html"
        if executed.is_file() and status != "not run":
            try:
                _render_html(executed, html_path)
            except Exception as e:  # a broken notebook must not hide the others
                warnings.warn(f"could not render {executed} to HTML: {e}", stacklevel=3)
        metrics_path = nb_dir / f"{name}.metrics.json"
        metrics = _read_json(metrics_path) if metrics_path.is_file() and status != "not run" else None
        rows.append(
            {
                "name": name,
                "status": status,
                "duration_s": entry.get("duration_s"),
                "error": entry.get("error"),
                "html": html_path if html_path.is_file() and status != "not run" else None,
                "ipynb": executed if executed.is_file() and status != "not run" else None,
                "metrics": flatten_metrics(metrics) if isinstance(metrics, dict) else {},
            }
        )
    return rows


def _index_page(run_dir: Path, rows: list[dict]) -> str:
    """index.html of `_index_rows`: links, status, duration, one column per metric, then errors."""
    keys = sorted({k for r in rows for k in r["metrics"]})

    def link(path: Path | None, text: str) -> str:
        if path is None:
            return html.escape(text)
        return f'<a href="{html.escape(path.relative_to(run_dir).as_posix())}">{html.escape(text)}</a>'

    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = []
    for r in rows:
        css = {"ok": "ok", "failed": "failed"}.get(r["status"], "notrun")
        dur = _fmt_duration(r["duration_s"]) if r["duration_s"] is not None else ""
        files = link(r["html"], r["name"]) + (" " + link(r["ipynb"], "(.ipynb)") if r["ipynb"] else "")
        cells = "".join(f"<td>{html.escape(format_value(r['metrics'].get(k)))}</td>" for k in keys)
        body.append(
            f'<tr><td class="l">{files}</td><td class="l {css}">{html.escape(r["status"])}</td>'
            f"<td>{dur}</td>{cells}</tr>"
        )
    errors = "".join(
        f"<h2>{html.escape(r['name'])} failed</h2><pre>{html.escape(r['error'])}</pre>" for r in rows if r["error"]
    )
    extra = ' · <a href="config.yaml">config.yaml</a>' if (run_dir / "config.yaml").is_file() else ""
    total = sum(r["duration_s"] or 0.0 for r in rows)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sim2real_kit run {html.escape(run_dir.name)}</title>
<style>{_CSS}</style></head><body>
<h1>sim2real_kit run: {html.escape(run_dir.name)}</h1>
<p class="sub">{html.escape(str(run_dir))} · {len(rows)} notebooks · {_fmt_duration(total)} in total · \
written {time.strftime("%Y-%m-%d %H:%M:%S")}{extra}</p>
<div class="wrap"><table>
<tr><th class="l">notebook</th><th class="l">status</th><th>duration</th>{head}</tr>
{chr(10).join(body)}
</table></div>
{errors}
</body></html>
"""


def write_index(run_dir: str | Path) -> Path:
    """Write `run_dir/index.html`: every notebook of the run (HTML render + executed copy links),
    status (ok / failed / not run), duration and all metrics in one table (nested keys dotted)."""
    run_dir = Path(run_dir).resolve()
    if not (run_dir / "notebooks").is_dir():
        raise Sim2RealError(
            "no notebooks/ folder: run the notebooks first (run_notebooks / `sim2real notebooks`)", run_dir
        )
    target = run_dir / "index.html"
    atomic_write_text(target, _index_page(run_dir, _index_rows(run_dir)))
    return target
