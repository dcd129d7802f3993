"""Small fixes to the book's HTML output (loaded through ``sphinx.local_extensions``).

Sphinx 7.x re-adds, in ``prepare_writing``, every script registered after
``Builder.init()`` as ``filename or ''``; a body-only script registered with
``filename=None`` (sphinx-thebe's ``const THEBE_JS_URL = ...``, sphinx-togglebutton's
selector) then appears twice on every page, and the second ``const`` is a SyntaxError.
This keeps the first of each identical script.

It also ties the repository links to ``_config.yml``'s ``repository.url``: left empty, the
pages show no repository or launch (Colab, Binder) buttons, which would point nowhere; set to
the book's real repository, both appear and point at it. The chapters' Colab install cells
follow the same setting (:func:`install_line`; ``tools/install_cells.py`` writes them).
"""

from __future__ import annotations


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    files = context.get("script_files")
    if not files:
        return
    seen = set()
    kept = []
    for js in files:
        filename = getattr(js, "filename", js) or ""
        attrs = getattr(js, "attributes", {}) or {}
        key = (str(filename), getattr(js, "priority", None), tuple(sorted((k, str(v)) for k, v in attrs.items())))
        if key in seen:
            continue
        seen.add(key)
        kept.append(js)
    files[:] = kept


def install_line(url: str | None) -> str:
    """The pip line of the chapters' Colab install cell: from ``url`` (the repository) when it
    is set, else from the clone that holds the notebook (its parent folder is the root)."""
    return f"!pip install -q git+{url.rstrip('/')}" if url else "!pip install -q -e .."


def repository_buttons(options: dict) -> dict:
    """``html_theme_options`` with the repository and launch buttons kept only when a
    repository URL is set."""
    if (options.get("repository_url") or "").strip():
        return {**options, "use_repository_button": True}
    return {**options, "use_repository_button": False, "use_issues_button": False,
            "use_edit_page_button": False, "use_source_button": False, "launch_buttons": {},
            "repository_url": ""}


def _config_inited(app, config):
    config.html_theme_options = repository_buttons(dict(config.html_theme_options or {}))


def setup(app):
    app.connect("config-inited", _config_inited)
    # After the other html-page-context handlers (myst-nb adds per-page widget scripts there).
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
