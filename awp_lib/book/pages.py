"""Executing the book's pages: ``python -m awp_lib book-pages``.

``make book`` trains every run first (``book-runs``), then executes the pages here, several at a
time, then renders them (``jupyter-book build``, which takes each page's outputs from the
jupyter-cache this fills and executes nothing):

* **One thread per page, N pages at once.** Each page's kernel runs torch at one intra-op thread
  (the pages call :func:`awp_lib.book.start_page`; the kernels also start with
  ``OMP_NUM_THREADS=1``), so a page's numbers do not depend on the reader's cores, and the
  pages execute ``jobs`` at a time (default: the cores, capped by free memory), longest first.
* **Per-cell limits.** Every cell has its profile's limit from ``awp_cell_timeouts`` in
  ``_config.yml`` (``default``, or ``long`` for cells tagged ``long-cell``); a cell over it, or a
  cell that raises, fails its page with an error naming the page, the cell and its first line.
  The other pages finish; then :class:`PagesFailed` lists the failures and nothing is rendered.
* **Measured.** Every cell's seconds go to ``_build/cell-times-<profile>.json``.

The chapters are independent: each reads finished runs (``runs/<profile>/``) and writes its own
``results/<profile>/<chapter>.json``. The pages of :data:`AFTER_THE_OTHERS` read those results
(chapter 6 reports every chapter's claims), so they start once the others have finished.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import yaml

from ..config import PROFILES, default_profile
from ..data import project_root
from ..validate import check_choice
from .build import default_jobs

LONG_TAG = "long-cell"
# a page kernel: the library, the data, a few models and attacks
MEMORY_PER_PAGE_GIB = 2.0
# a kernel that dies before its first cell (kernels started side by side can race for a TCP
# port) is started again, up to this many times in all
KERNEL_STARTS = 3


class PagesFailed(RuntimeError):
    """Some pages failed to execute; the others finished."""


def toc_notebooks(root: Path | None = None) -> list[Path]:
    """The notebooks listed in ``_toc.yml`` (relative to the repository root), in book order."""
    root = Path(root or project_root())
    toc = yaml.safe_load((root / "_toc.yml").read_text())

    def files(node):
        out = [node["file"]] if "file" in node else []
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key) or []:
                out += files(child)
        return out
    return [Path(f + ".ipynb") for f in files(toc) if (root / (f + ".ipynb")).is_file()]


def cell_limits(profile: str, root: Path | None = None, table: dict | None = None) -> dict[str, int]:
    """``{"default": s, "long": s}``: the profile's per-cell limits from ``table`` (default:
    ``awp_cell_timeouts`` in ``_config.yml``)."""
    if table is None:
        root = Path(root or project_root())
        table = yaml.safe_load((root / "_config.yml").read_text())["sphinx"]["config"]["awp_cell_timeouts"]
    if profile not in table:
        raise ValueError(f"awp_cell_timeouts in _config.yml has no entry for profile {profile!r}; "
                         f"it has {sorted(table)}")
    return {"default": int(table[profile]["default"]), "long": int(table[profile]["long"])}


def limit_of(cell, limits: dict[str, int]) -> int:
    """A cell's limit in seconds: ``long`` when tagged ``long-cell``, else ``default``."""
    tags = cell.get("metadata", {}).get("tags", [])
    return limits["long" if LONG_TAG in tags else "default"]


def first_line(cell, width: int = 80) -> str:
    return (cell.get("source", "").strip().splitlines() or [""])[0][:width]


def timeout_message(page, index, cell, timeout) -> str:
    return (f"cell {index} of {page} ran past its {timeout} s limit (awp_cell_timeouts in "
            f"_config.yml; tag the cell {LONG_TAG} if it must take longer): {first_line(cell)!r}")


def _client_class():
    """nbclient's NotebookClient with per-cell limits and a timing of every code cell."""
    import nbclient  # optional dependency (the pages)

    class TimedClient(nbclient.NotebookClient):
        def __init__(self, nb, page: str, limits: dict, **kw):
            super().__init__(nb, **kw)
            self.page, self.limits, self.times = page, limits, []

        def _get_timeout(self, cell):
            return limit_of(cell, self.limits) if cell is not None else self.timeout

        async def _async_handle_timeout(self, timeout, cell=None):
            index = self.nb.cells.index(cell) if cell is not None and cell in self.nb.cells else "?"
            raise nbclient.exceptions.CellTimeoutError(timeout_message(self.page, index, cell or {}, timeout))

        async def async_execute_cell(self, cell, cell_index, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return await super().async_execute_cell(cell, cell_index, *args, **kwargs)
            finally:
                if cell.get("cell_type") == "code":
                    self.times.append({"cell": cell_index, "seconds": round(time.perf_counter() - t0, 2),
                                       "limit": limit_of(cell, self.limits), "first_line": first_line(cell, 60)})
    return TimedClient


def execute_page(root: str, page: str, profile: str, limits: dict) -> dict:
    """Execute one page in a worker process (its kernel at one thread, its folder as the working
    directory): ``{"page", "seconds", "cells", "notebook"}`` (the executed notebook as JSON), or
    with ``"error"`` naming the page and the cell."""
    import nbformat  # optional dependency (the pages)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"           # inherited by the kernel
    os.environ["AWP_PROFILE"] = profile
    os.environ["AWP_BOOK_RUNS"] = "read"  # pages read finished runs; book-runs trains them
    path = Path(root) / page
    for attempt in range(1, KERNEL_STARTS + 1):
        nb = nbformat.read(path, as_version=4)
        kernelspec = nb.metadata.get("kernelspec")
        # record_timing off: the cache matches a page by its code cells' source *and metadata*
        client = _client_class()(nb, page, limits, timeout=limits["long"], kernel_name="python3",
                                 allow_errors=False, record_timing=False,
                                 resources={"metadata": {"path": str(path.parent)}})
        t0 = time.perf_counter()
        try:
            client.execute()
            break
        except Exception as e:  # a cell raised or ran past its limit, or the kernel did not start
            index = client.times[-1]["cell"] if client.times else None
            if index is None and attempt < KERNEL_STARTS:
                time.sleep(attempt)  # kernels started side by side can race for a port: start again
                continue
            cell = nb.cells[index] if index is not None else {}
            where = f"{page}, cell {index} ({first_line(cell)!r})" if index is not None else f"{page} (no cell ran)"
            text = str(e) if "ran past its" in str(e) else f"{where}: {type(e).__name__}: {str(e)[-3000:]}"
            return {"page": page, "seconds": time.perf_counter() - t0, "cells": client.times, "error": text}
    if kernelspec is not None:
        nb.metadata["kernelspec"] = kernelspec
    return {"page": page, "seconds": time.perf_counter() - t0, "cells": client.times,
            "notebook": nbformat.writes(nb)}


CACHE = ".jupyter_cache"
MARKER = "awp-pages.json"  # in the cache folder: the profile its pages were executed at


def cache_profile(build: Path) -> str | None:
    """The profile whose pages the build folder's jupyter-cache holds (None: unknown)."""
    try:
        return json.loads((Path(build) / CACHE / MARKER).read_text())["profile"]
    except (OSError, ValueError, KeyError):
        return None


def _store(build: Path, root: Path, page: str, executed: str, seconds: float) -> None:
    """Put an executed page into the jupyter-cache that ``jupyter-book build`` reads
    (``<build>/.jupyter_cache``, where ``<build>`` is ``_build`` of its ``--path-output``)."""
    import nbformat  # optional dependency (the pages)
    from jupyter_cache import get_cache  # optional dependency (the pages)
    from jupyter_cache.base import CacheBundleIn  # optional dependency (the pages)
    get_cache(str(build / CACHE)).cache_notebook_bundle(
        CacheBundleIn(nbformat.reads(executed, as_version=4), str((root / page).resolve()),
                      data={"execution_seconds": seconds}), check_validity=False, overwrite=True)


# Pages that read the other pages' results/<profile>/*.json: executed after them.
AFTER_THE_OTHERS = ("book/ch6_report.ipynb",)


def _longest_first(pages: list[Path], times_file: Path) -> list[Path]:
    """Pages by their last measured seconds, longest first (book order when none was measured)."""
    try:
        last = json.loads(times_file.read_text())["notebooks"]
    except (OSError, ValueError, KeyError):
        return pages
    seconds = {p: sum(c["seconds"] for c in last.get(p.with_suffix("").as_posix(), [])) for p in pages}
    return sorted(pages, key=lambda p: -seconds[p])


def execute_pages(profile: str, jobs: int | None = None, only: list[str] | None = None,
                  root: Path | None = None, build: Path | None = None, say=print) -> dict:
    """Execute every page of ``_toc.yml`` (or those named in ``only``), ``jobs`` at a time, into
    the jupyter-cache of the build folder ``build`` (default ``<root>/_build``); write the cell
    times there; raise :class:`PagesFailed` if any failed."""
    check_choice("profile", profile, PROFILES)
    root = Path(root or project_root()).resolve()
    build = Path(build).resolve() if build else root / "_build"
    limits = cell_limits(profile, root)
    pages = toc_notebooks(root)
    if only:
        unknown = [p for p in only if Path(p) not in pages]
        if unknown:
            raise ValueError(f"unknown page {unknown[0]!r}; the pages of _toc.yml: "
                             + ", ".join(p.as_posix() for p in pages))
        pages = [p for p in pages if p.as_posix() in only]
    times_file = build / f"cell-times-{profile}.json"
    pages = _longest_first(pages, times_file)
    jobs = default_jobs(MEMORY_PER_PAGE_GIB) if jobs is None else jobs
    if not (isinstance(jobs, int) and jobs >= 1):
        raise ValueError(f"jobs={jobs!r} is invalid: a positive number of pages executed at once")
    jobs = min(jobs, len(pages))
    say(f"pages ({profile}): {len(pages)}, {jobs} at a time, one thread each")
    build.mkdir(parents=True, exist_ok=True)
    if not only or cache_profile(build) != profile:  # nothing executed by older code or at another profile
        shutil.rmtree(build / CACHE, ignore_errors=True)
    (build / CACHE).mkdir(exist_ok=True)
    (build / CACHE / MARKER).write_text(json.dumps({"profile": profile}))
    measured, failed, t0 = {}, {}, time.perf_counter()
    later = [p for p in pages if p.as_posix() in AFTER_THE_OTHERS]
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        def start(ps):
            return {pool.submit(execute_page, str(root), p.as_posix(), profile, limits): p for p in ps}
        running = start([p for p in pages if p not in later])
        while running or later:
            if not running:  # every other page has finished: the results they wrote are read now
                running, later = start(later), []
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                running.pop(f)
                r = f.result()
                measured[Path(r["page"]).with_suffix("").as_posix()] = r["cells"]
                if "error" in r:
                    failed[r["page"]] = r["error"]
                    say(f"FAILED {r['page']} after {r['seconds']:.0f} s: {r['error']}")
                    continue
                _store(build, root, r["page"], r["notebook"], r["seconds"])
                slowest = max(r["cells"], key=lambda c: c["seconds"], default=None)
                say(f"executed {r['page']} in {r['seconds']:.0f} s"
                    + (f" (slowest cell {slowest['cell']}: {slowest['seconds']:.0f} s)" if slowest else ""))
    wall = time.perf_counter() - t0
    if only:  # the other pages keep their last measured cells
        try:
            measured = {**json.loads(times_file.read_text())["notebooks"], **measured}
        except (OSError, ValueError, KeyError):
            pass
    record = {"profile": profile, "limits": limits, "jobs": jobs, "wall_seconds": round(wall, 1),
              "notebooks": measured}
    times_file.write_text(json.dumps(record, indent=1))
    if failed:
        raise PagesFailed(f"{len(failed)} of {len(pages)} pages failed (the others executed): "
                          + "; ".join(failed.values()))
    return record


def register_cli(sub) -> None:
    p = sub.add_parser("book-pages", help="execute the book's pages, several at a time, one thread each",
                       description="Executes the notebooks of _toc.yml into the build's jupyter-cache; "
                                   "`make book` then renders them with jupyter-book.")
    p.add_argument("--profile", default=None, help="smoke | cpu | paper (default: $AWP_PROFILE or cpu)")
    p.add_argument("--jobs", type=int, default=None,
                   help="pages executed at once (default: the cores, capped by free memory at "
                        f"{MEMORY_PER_PAGE_GIB:g} GiB per page)")
    p.add_argument("--only", default=None, help="comma list of pages, e.g. book/ch1_attacks.ipynb")
    p.add_argument("--build-dir", default=None,
                   help="the build folder jupyter-book renders from (default: _build; with "
                        "jupyter-book's --path-output X: X/_build)")
    p.add_argument("--list", action="store_true", help="print the pages of _toc.yml and stop")
    p.set_defaults(fn=_cmd)


def _cmd(args) -> None:
    if args.list:
        print(" ".join(p.as_posix() for p in toc_notebooks()))
        return
    profile = args.profile or default_profile()
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    execute_pages(profile, args.jobs, only, build=args.build_dir)
