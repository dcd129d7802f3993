"""Executing pages several at a time (awp_lib.book.pages): limits, errors, the cache, one thread."""
import json

import nbformat
import pytest
import yaml

from awp_lib.book import pages


def _book(tmp_path, cells_by_page):
    toc = {"format": "jb-book", "root": "intro", "chapters": [{"file": f"book/{p}"} for p in cells_by_page]}
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump(toc))
    (tmp_path / "intro.md").write_text("# intro\n")
    cfg = {"sphinx": {"config": {"awp_cell_timeouts": {"smoke": {"default": 10, "long": 60}}}}}
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "book").mkdir()
    for page, cells in cells_by_page.items():
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, tmp_path / "book" / f"{page}.ipynb")
    return tmp_path


def test_pages_execute_in_parallel_into_the_cache_at_one_thread(tmp_path):
    root = _book(tmp_path, {"a": ["import os\nprint(os.environ['OMP_NUM_THREADS'])", "x = 1 + 1\nx"],
                            "b": ["import time\ntime.sleep(0.2)"]})
    assert pages.toc_notebooks(root) == [pages.Path("book/a.ipynb"), pages.Path("book/b.ipynb")]
    record = pages.execute_pages("smoke", jobs=2, root=root, say=lambda *_: None)
    assert record["jobs"] == 2 and set(record["notebooks"]) == {"book/a", "book/b"}
    assert [c["cell"] for c in record["notebooks"]["book/a"]] == [0, 1]
    assert all(c["limit"] == 10 for c in record["notebooks"]["book/a"])
    saved = json.loads((root / "_build" / "cell-times-smoke.json").read_text())
    assert saved["notebooks"] == record["notebooks"]
    from jupyter_cache import get_cache
    cache = get_cache(str(root / "_build" / ".jupyter_cache"))
    source = nbformat.read(root / "book" / "a.ipynb", as_version=4)
    _, merged = cache.merge_match_into_notebook(source)   # what jupyter-book renders: a match
    assert merged.cells[0].outputs[0]["text"].strip() == "1"   # the kernel ran at one thread
    assert merged.cells[1].outputs[0]["data"]["text/plain"] == "2"
    assert pages.cache_profile(root / "_build") == "smoke"   # a build at another profile empties it
    pages.execute_pages("smoke", jobs=1, only=["book/b.ipynb"], root=root, say=lambda *_: None)
    again = json.loads((root / "_build" / "cell-times-smoke.json").read_text())["notebooks"]
    assert again["book/a"] == record["notebooks"]["book/a"]   # --only keeps the other pages' times
    assert cache.match_cache_notebook(source) is not None     # ... and their executed notebooks


def test_a_failing_or_slow_cell_names_page_and_cell_and_the_others_finish(tmp_path):
    root = _book(tmp_path, {"good": ["1"], "bad": ["y = 2", "raise ValueError('boom')"],
                            "slow": ["import time\ntime.sleep(30)"]})
    with pytest.raises(pages.PagesFailed) as e:
        pages.execute_pages("smoke", jobs=3, root=root, say=lambda *_: None)
    msg = str(e.value)
    assert "2 of 3 pages failed" in msg
    assert "book/bad.ipynb, cell 1 (\"raise ValueError('boom')\")" in msg and "boom" in msg
    assert "cell 0 of book/slow.ipynb ran past its 10 s limit" in msg
    times = json.loads((root / "_build" / "cell-times-smoke.json").read_text())["notebooks"]
    assert set(times) == {"book/good", "book/bad", "book/slow"}


def test_bad_arguments_name_the_choices(tmp_path):
    root = _book(tmp_path, {"a": ["1"]})
    with pytest.raises(ValueError, match="unknown page 'book/z.ipynb'; the pages of _toc.yml: book/a.ipynb"):
        pages.execute_pages("smoke", only=["book/z.ipynb"], root=root)
    with pytest.raises(ValueError, match="jobs=0 is invalid"):
        pages.execute_pages("smoke", jobs=0, root=root)
    with pytest.raises(ValueError, match="no entry for profile 'cpu'"):
        pages.execute_pages("cpu", root=root)
