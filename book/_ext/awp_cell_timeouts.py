"""Per-cell limits for a page the build itself executes (loaded through ``sphinx.local_extensions``).

``make book`` executes every page beforehand (``python -m awp_lib book-pages``, which applies
the limits and records the cell times) and the build renders them from the jupyter-cache. A page
missing from the cache (a ``jupyter-book build`` run by hand) is executed by the build: then
each of its cells gets the same limits, ``awp_cell_timeouts`` in ``_config.yml`` for the
profile (:func:`awp_lib.book.pages.limit_of`), and a cell over its limit stops the build with
an error naming the notebook, the cell and its first line, instead of a silent wait (a live
widget can stall the notebook client: jupyter/nbclient#312).
"""
from __future__ import annotations

import os

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
    _LIMITS.clear()
    _LIMITS.update(pages.cell_limits(os.environ.get("AWP_PROFILE", "cpu"), app.srcdir))
    _install()


def setup(app):
    app.add_config_value("awp_cell_timeouts", {}, "env")
    app.connect("config-inited", _config_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
