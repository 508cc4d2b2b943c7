"""Notebook hygiene (DESIGN §6): a committed notebook has no outputs or execution counts, no
`def` / `class` in its cells (they belong in the library) and exactly one `parameters` cell of
`name = <literal>` statements declaring at least the common parameters."""

from __future__ import annotations

import ast
from pathlib import Path

from sim2real_kit.runner.notebooks import COMMON_PARAMETERS, _first_line, default_notebooks


def _python_source(source: str) -> str:
    """Cell source with IPython syntax (%magic, !shell) turned into Python, for `ast`."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:
        return "\n".join("pass" if s.lstrip().startswith(("%", "!")) else s for s in source.splitlines())


def _code_cell_problems(name: str, i: int, cell) -> list[str]:
    """Outputs or execution count committed, a syntax error, `def` / `class` in code cell `i`."""
    problems = []
    if cell.get("outputs"):
        problems.append(f"{name}: cell {i}: outputs committed (strip them)")
    if cell.get("execution_count") is not None:
        problems.append(f"{name}: cell {i}: execution_count committed (strip outputs)")
    try:
        tree = ast.parse(_python_source(cell.source))
    except SyntaxError as e:
        problems.append(f"{name}: cell {i}: syntax error: {e.msg} (line {e.lineno})")
        return problems
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            kind = "class" if isinstance(node, ast.ClassDef) else "def"
            problems.append(f"{name}: cell {i}: `{kind} {node.name}` — move it into the library")
    return problems


def _parameters_cell_problems(name: str, idx: int, cell) -> list[str]:
    """Statements of the parameters cell that are not `name = <literal>`; common parameters missing."""
    problems = []
    names = set()
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as e:
        problems.append(f"{name}: parameters cell {idx}: syntax error: {e.msg}")
        tree = ast.Module(body=[], type_ignores=[])
    for stmt in tree.body:
        target, value = None, None
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            target, value = stmt.targets[0].id, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            target, value = stmt.target.id, stmt.value
        text = ast.get_source_segment(cell.source, stmt) or ast.dump(stmt)
        if target is None:
            problems.append(f"{name}: parameters cell {idx}: `{_first_line(text)}` is not `name = <literal>`")
            continue
        try:
            ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError):
            problems.append(
                f"{name}: parameters cell {idx}: `{_first_line(text)}` is not a literal "
                "(compute derived values in the next cell)"
            )
        names.add(target)
    missing = [n for n in COMMON_PARAMETERS if n not in names]
    if missing:
        problems.append(f"{name}: parameters cell {idx} lacks common parameter(s): {', '.join(missing)}")
    return problems


def check_notebook(path: str | Path) -> list[str]:
    """Hygiene problems of a committed notebook (empty list = clean): outputs or execution counts
    committed, not exactly one `parameters` cell, `def`/`class` in a code cell, common parameters
    (run_dir, preset, quick, seed, overrides) missing, or a parameters statement that is not
    `name = <literal>`."""
    import nbformat

    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:
        return [f"{path.name}: not a readable notebook ({type(e).__name__}: {e})"]
    problems = []
    param_cells = []
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.metadata.get("tags", []):
            param_cells.append(i)
        if cell.cell_type == "code":
            problems += _code_cell_problems(path.name, i, cell)
    if len(param_cells) != 1:
        where = f" (cells {param_cells})" if param_cells else ""
        problems.append(f"{path.name}: {len(param_cells)} cells tagged 'parameters'{where}, expected exactly one")
    if param_cells:
        problems += _parameters_cell_problems(path.name, param_cells[0], nb.cells[param_cells[0]])
    return problems


def check_notebooks(paths: list[str | Path] | None = None) -> dict[str, list[str]]:
    """`check_notebook` over a list (default: the repo's NN_*.ipynb); only notebooks with problems."""
    out = {}
    for p in paths if paths is not None else default_notebooks():
        problems = check_notebook(p)
        if problems:
            out[str(p)] = problems
    return out
