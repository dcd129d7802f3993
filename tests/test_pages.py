"""The chapters call the library, they do not copy it: few functions defined in pages (teaching
code), short code cells, no training and no run-folder paths built inside a page."""
import ast
import re
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted((REPO / "book").glob("*.ipynb"))


def code_cells():
    for path in PAGES:
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if cell.cell_type == "code":
                yield f"{path.name}[{i}]", cell.source


def test_pages_define_few_functions_and_keep_cells_short():
    functions, long_cells = [], []
    for where, source in code_cells():
        code = "\n".join(  # a shell or magic line counts as one statement
            line[:len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("!", "%"))
            else line for line in source.splitlines())
        functions += [f"{where} {n.name}" for n in ast.walk(ast.parse(code))
                      if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        if len(source.splitlines()) > 25:
            long_cells.append(where)
    assert len(functions) <= 12, functions
    assert len(long_cells) <= 10, long_cells


def test_pages_neither_train_nor_build_run_folders():
    """Runs are trained by book-runs and read through the run list's Runs (rows, model,
    pseudo_labels ...): no page calls the training loop or writes a path into runs/."""
    for where, source in code_cells():
        assert "train.train(" not in source, where
        path = r"""/\s*["']checkpoints["']|["']checkpoints["']\s*/|\.folder\.path\s*/"""
        assert not re.search(path, source), where
        assert "save_torch(" not in source and "save_text(" not in source, where
