"""Write the chapters' Colab install line from ``_config.yml``'s ``repository.url``.

    python tools/install_cells.py   # after setting or clearing repository.url

Each chapter's first code cell installs the library when it runs in Colab: from the repository
when ``repository.url`` is set (the launch buttons open the notebook from there), else from the
clone that holds the notebook (``book/_ext/awp_book_html.install_line``).
"""
import re
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
from awp_book_html import install_line  # noqa: E402

PIP = re.compile(r"^(\s*)!pip install -q .*$", re.M)


def main() -> None:
    url = (yaml.safe_load((ROOT / "_config.yml").read_text()).get("repository") or {}).get("url")
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cell = next((c for c in nb.cells if c.cell_type == "code" and "google.colab" in c.source), None)
        if cell is None:
            continue
        new = PIP.sub(lambda m: m.group(1) + install_line(url), cell.source)
        if new != cell.source:
            cell.source = new
            nbformat.write(nb, path)
            print(f"{path.relative_to(ROOT)}: {install_line(url)}")


if __name__ == "__main__":
    main()
