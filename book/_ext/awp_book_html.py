"""Small fixes to the book's HTML output (loaded through ``sphinx.local_extensions``).

Sphinx 7.x re-adds, in ``prepare_writing``, every script registered after
``Builder.init()`` as ``filename or ''``; a body-only script registered with
``filename=None`` (sphinx-thebe's ``const THEBE_JS_URL = ...``, sphinx-togglebutton's
selector) then appears twice on every page, and the second ``const`` is a SyntaxError.
This keeps the first of each identical script.
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


def setup(app):
    # After the other html-page-context handlers (myst-nb adds per-page widget scripts there).
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
