"""Write a chapter notebook from a compact list of cells (used to author the chapters).

    from tools.nb import md, code, write
    write("book/ch2.ipynb", [md("# Title"), code("x = 1", tags=["parameters"])])

Notebooks are written without outputs, kernelspec python3: the book build executes them.
"""
import nbformat


def md(text):
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text, tags=()):
    c = nbformat.v4.new_code_cell(text.strip("\n"))
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def write(path, cells):
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, path)
