"""The book build's side of ``python -m awp_lib book-pages`` (loaded through ``sphinx.local_extensions``).

``make book`` executes every page beforehand (``book-pages``, which applies the per-cell limits
and records the cell times) and the build renders them from the jupyter-cache. Two guards:

* **No page of another profile.** The cache records the profile its pages were executed at; a
  build at another profile (``AWP_PROFILE``) empties it, so its pages are executed afresh.
* **The same limits for a page the build executes** (one missing from the cache, e.g. in a
  ``jupyter-book build`` run by hand): ``awp_cell_timeouts`` for the profile
  (:func:`awp_lib.book.pages.limit_of`); a cell over its limit stops the build with an error
  naming the notebook, the cell and its first line, instead of a silent wait (a live widget
  can stall the notebook client: jupyter/nbclient#312).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbclient.client as nbc
from awp_lib.book import pages

_LIMITS: dict[str, int] = {}     # default / long, for the profile being built


def _install() -> None:
    client = nbc.NotebookClient
    if getattr(client, "_awp_patched", False):
        return

    def _get_timeout(self, cell):
        return pages.limit_of(cell, _LIMITS) if (cell is not None and _LIMITS) else self.timeout

    async def _async_handle_timeout(self, timeout, cell=None):
        index = self.nb.cells.index(cell) if cell is not None and cell in self.nb.cells else "?"
        path = self.resources.get("metadata", {}).get("path", "")
        raise nbc.CellTimeoutError(pages.timeout_message(f"the notebook in {path}", index, cell or {}, timeout))

    client._get_timeout = _get_timeout
    client._async_handle_timeout = _async_handle_timeout
    client._awp_patched = True


def _config_inited(app, config):
    profile = os.environ.get("AWP_PROFILE", "cpu")
    _LIMITS.clear()
    _LIMITS.update(pages.cell_limits(profile, table=config.awp_cell_timeouts or {}))
    build = Path(app.outdir).parent
    if (build / pages.CACHE).exists() and pages.cache_profile(build) != profile:
        shutil.rmtree(build / pages.CACHE, ignore_errors=True)
    _install()


def setup(app):
    app.add_config_value("awp_cell_timeouts", {}, "env")
    app.connect("config-inited", _config_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
