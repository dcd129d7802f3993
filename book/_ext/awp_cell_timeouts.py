"""Per-cell timeouts for the book build, sized per profile (loaded through ``sphinx.local_extensions``).

``make book`` trains every run before the notebooks execute (``python -m awp_lib book-runs``),
so no cell of a page trains: each cell gets the profile's ``default`` limit, and cells tagged
``long-cell`` (landscapes, AutoAttack) the profile's ``long`` one, from ``awp_cell_timeouts``
in ``_config.yml``. A cell over its limit stops the build with an error naming the notebook,
the cell number and its first line, instead of a silent wait (a live widget can stall the
notebook client: jupyter/nbclient#312). Every cell's duration is written to
``<html>/../cell-times-<profile>.json``, so the limits can be checked against measured times.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbclient.client as nbc

_TIMES: dict[str, list] = {}     # page -> measured cells
_LIMITS: dict[str, int] = {}     # default / long, for the profile being built
_CURRENT: dict[str, str] = {}    # the page whose notebook executes now


def _limit(cell) -> int:
    tags = cell.get("metadata", {}).get("tags", [])
    return _LIMITS["long" if "long-cell" in tags else "default"]


def _install() -> None:
    client = nbc.NotebookClient
    if getattr(client, "_awp_patched", False):
        return
    plain_execute = client.async_execute_cell

    def _get_timeout(self, cell):
        return _limit(cell) if (cell is not None and _LIMITS) else self.timeout

    async def _async_handle_timeout(self, timeout, cell=None):
        index = self.nb.cells.index(cell) if cell is not None and cell in self.nb.cells else "?"
        path = self.resources.get("metadata", {}).get("path", "")
        first = (cell.source.strip().splitlines() or [""])[0][:80] if cell is not None else ""
        raise nbc.CellTimeoutError(
            f"cell {index} of the notebook in {path} ran past its {timeout} s limit "
            f"(awp_cell_timeouts in _config.yml; tag the cell long-cell if it must take longer): {first!r}")

    async def async_execute_cell(self, cell, cell_index, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return await plain_execute(self, cell, cell_index, *args, **kwargs)
        finally:
            if cell.get("cell_type") == "code":
                first = (cell.source.strip().splitlines() or [""])[0][:60]
                _TIMES.setdefault(_CURRENT.get("doc", "?"), []).append(
                    {"cell": cell_index, "seconds": round(time.perf_counter() - t0, 2),
                     "limit": _get_timeout(self, cell), "first_line": first})

    client._get_timeout = _get_timeout
    client._async_handle_timeout = _async_handle_timeout
    client.async_execute_cell = async_execute_cell
    client._awp_patched = True


def _name_notebook(app, docname, source):
    """Remember which page a notebook client executes (for the timings file)."""
    _CURRENT["doc"] = docname



def _config_inited(app, config):
    profile = os.environ.get("AWP_PROFILE", "cpu")
    table = config.awp_cell_timeouts or {}
    if profile not in table:
        raise ValueError(f"awp_cell_timeouts in _config.yml has no entry for profile {profile!r}; "
                         f"it has {sorted(table)}")
    _LIMITS.clear()
    _LIMITS.update({"default": int(table[profile]["default"]), "long": int(table[profile]["long"])})
    _install()


def _write_times(app, exception):
    if not _TIMES:
        return
    profile = os.environ.get("AWP_PROFILE", "cpu")
    out = Path(app.outdir).parent / f"cell-times-{profile}.json"
    out.write_text(json.dumps({"profile": profile, "limits": _LIMITS, "notebooks": _TIMES}, indent=1))


def setup(app):
    app.add_config_value("awp_cell_timeouts", {}, "env")
    app.connect("config-inited", _config_inited)
    app.connect("source-read", _name_notebook)
    app.connect("build-finished", _write_times)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
