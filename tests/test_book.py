"""Browser check of the built book.

Builds the book at ``AWP_PROFILE=smoke`` into a separate folder (``_build_smoke/`` by
default, so ``_build/`` from ``make book`` is left alone), serves it on a free localhost
port and opens every page of ``_toc.yml`` in headless Chromium (Debian's
``/usr/bin/chromium``, driven by the PyPI ``playwright`` package; Playwright's own
browsers are never downloaded). A page fails on:

* a JavaScript error or a console error,
* a failed or >= 400 request to the local server,
* any request to another host (the book must work offline: widget JS is served locally),
* an ``<img>`` that did not load (``naturalWidth == 0``),
* widgets in the page state that did not render,
* an ``.awp-slider`` whose ``.awp-stack`` does not switch figure when the slider moves,
* an element of the content column wider than the column, or one that scrolls sideways,
  at 1280 px (the reader's pass: code cells are formatted to 88 columns).

Every page is also screenshotted, whole, to ``<build dir>/screens/<page>.png``.

Environment:
    AWP_BOOK_HTML       use this already built HTML folder instead of building
    AWP_BOOK_BUILD_DIR  --path-output of the smoke build (default: <repo>/_build_smoke)
    AWP_CHROMIUM        browser executable (default: /usr/bin/chromium)
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("AWP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
BUILD_DIR = Path(os.environ.get("AWP_BOOK_BUILD_DIR", REPO / "_build_smoke")).resolve()
WIDGET_TIMEOUT_MS = 20_000


def toc_pages() -> list[str]:
    """HTML paths (relative to the build root) of every file listed in _toc.yml."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files: list[str] = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [str(Path(f).with_suffix("")) + ".html" for f in files]


def _jupyter_book() -> str:
    exe = Path(sys.executable).with_name("jupyter-book")
    if exe.exists():
        return str(exe)
    found = shutil.which("jupyter-book")
    if not found:
        pytest.fail("jupyter-book not found (run `make venv`)")
    return found


@pytest.fixture(scope="module")
def html_dir() -> Path:
    given = os.environ.get("AWP_BOOK_HTML")
    if given:
        path = Path(given).resolve()
        assert (path / "index.html").is_file(), f"AWP_BOOK_HTML={given} has no index.html"
        return path
    # Widget JS must be present, or every widget silently vanishes from the pages.
    subprocess.run(["bash", str(REPO / "tools" / "fetch_widget_js.sh")], check=True, cwd=REPO)
    out = BUILD_DIR
    env = dict(os.environ, AWP_PROFILE="smoke", AWP_BOOK_RUNS="read")
    # as make book does: every run first, then the pages (which only read finished runs)
    subprocess.run([sys.executable, "-m", "awp_lib", "book-runs", "--profile", "smoke"], cwd=REPO, check=True)
    # the pages executed several at a time into the build's jupyter-cache, then rendered from it
    subprocess.run([sys.executable, "-m", "awp_lib", "book-pages", "--profile", "smoke",
                    "--build-dir", str(out / "_build")], cwd=REPO, env=env, check=True)
    proc = subprocess.run(
        # --all: Sphinx would otherwise skip (not re-execute) notebooks whose source is
        # unchanged, even when awp_lib changed.
        [_jupyter_book(), "build", "--all", ".", "--path-output", str(out)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if proc.returncode != 0:
        pytest.fail(f"smoke build of the book failed (exit {proc.returncode}):\n{proc.stdout[-8000:]}")
    path = out / "_build" / "html"
    assert (path / "index.html").is_file(), f"no index.html in {path}"
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D102 - keep pytest output clean
        pass


@pytest.fixture(scope="module")
def server(html_dir: Path):
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install it with `make sysdeps` "
            "(apt-get install chromium) or set AWP_CHROMIUM"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


# Wait until every <img> has finished loading (or failed); return the broken ones.
_BROKEN_IMAGES_JS = """
async () => {
  const imgs = [...document.images].filter(i => i.getAttribute('src'));
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => {
    i.addEventListener('load', r, {once: true});
    i.addEventListener('error', r, {once: true});
    setTimeout(r, 10000);
  })));
  return imgs.filter(i => i.naturalWidth === 0)
             .map(i => (i.getAttribute('src') || '').slice(0, 120));
}
"""

# Every widget-view script has a rendered widget next to it (html-manager puts a
# .widget-subarea holding the view in the same output container).
_ALL_VIEWS_RENDERED_JS = """
() => [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')]
  .every(s => { const a = s.parentElement.querySelector('.widget-subarea');
                return a && a.childElementCount > 0; })
"""

# Source of the figure currently shown by the stack paired with slider number `i`.
_VISIBLE_IMAGE_JS = """
(i) => {
  const slider = document.querySelectorAll('.awp-slider')[i];
  const cell = slider.closest('.cell_output, .output, .cell');
  let stack = cell ? cell.querySelector('.awp-stack') : null;
  if (!stack) stack = document.querySelectorAll('.awp-stack')[i];
  if (!stack) return null;
  const shown = [...stack.querySelectorAll('img')].filter(
      img => img.offsetParent !== null && img.getBoundingClientRect().width > 0);
  return shown.length ? shown.map(img => img.src).join(' ') : '';
}
"""


# Elements of the content column that stick out of it or scroll sideways (a few, described).
_TOO_WIDE_JS = """
() => {
  const col = document.querySelector('article.bd-article') || document.querySelector('main');
  if (!col) return ['no content column (article.bd-article)'];
  const right = col.getBoundingClientRect().right + 1;
  const out = [];
  const say = el => {
    const cls = (el.className && el.className.baseVal === undefined) ? el.className : '';
    const text = (el.innerText || el.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 60);
    return `<${el.tagName.toLowerCase()} class="${cls}"> ${text}`;
  };
  for (const el of col.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;          // hidden (e.g. a slider's other figures)
    const cs = getComputedStyle(el);
    const scrolls = ['auto', 'scroll'].includes(cs.overflowX) && el.scrollWidth > el.clientWidth + 1;
    if (scrolls || r.right > right) {
      if (!out.some(o => o.el.contains(el))) out.push({el, text: say(el) + (scrolls
        ? ` (scrolls: ${el.scrollWidth} > ${el.clientWidth} px)` : ` (right edge ${Math.round(r.right)} > ${Math.round(right)} px)`)});
    }
  }
  return out.slice(0, 8).map(o => o.text);
}
"""

@pytest.mark.parametrize("page_path", toc_pages())
def test_page(browser, server, html_dir, page_path: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    external: list[str] = []

    def route(route):
        host = urlsplit(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            route.continue_()
        else:  # the network is "closed": a page must not need any other host
            external.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    if not configured_url():  # no repository: no buttons that would point nowhere
        text = (html_dir / page_path).read_text()
        assert "colab.research.google.com" not in text and "repository-button" not in text, page_path
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None,
    )

    def on_failed(req):
        if urlsplit(req.url).hostname in LOCAL_HOSTS:
            problems.append(f"request failed: {req.url} ({req.failure})")

    def on_response(resp):
        if urlsplit(resp.url).hostname in LOCAL_HOSTS and resp.status >= 400:
            problems.append(f"HTTP {resp.status}: {resp.url}")

    page.on("requestfailed", on_failed)
    page.on("response", on_response)

    try:
        resp = page.goto(f"{server}/{page_path}", wait_until="load")
        assert resp is not None and resp.ok, f"{page_path}: HTTP {resp and resp.status}"

        # Widgets: every view in the page must render (offline, from the local JS).
        n_views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
        if n_views:
            state = page.locator('script[type="application/vnd.jupyter.widget-state+json"]')
            assert state.count() == 1, f"{page_path}: widget views but no widget state"
            try:
                page.wait_for_function(_ALL_VIEWS_RENDERED_JS, timeout=WIDGET_TIMEOUT_MS)
            except Exception:
                pytest.fail(
                    f"{page_path}: {n_views} widget view(s) did not render "
                    f"(widget JS missing or blocked?); external requests: {external}; "
                    f"problems: {problems}"
                )
        else:
            page.wait_for_load_state("networkidle")

        broken = page.evaluate(_BROKEN_IMAGES_JS)
        assert not broken, f"{page_path}: images that did not load: {broken}"

        screens = BUILD_DIR / "screens"
        screens.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screens / (page_path.replace("/", "_")[:-5] + ".png")), full_page=True)
        too_wide = page.evaluate(_TOO_WIDE_JS)
        assert not too_wide, f"{page_path}: wider than the content column at 1280 px: {too_wide}"

        # Sliders that switch precomputed figures (jsdlink slider.index -> stack.selected_index).
        n_sliders = page.locator(".awp-slider").count()
        for i in range(n_sliders):
            slider = page.locator(".awp-slider").nth(i)
            slider.scroll_into_view_if_needed()
            slider.locator(".widget-readout, .widget-readout-selection, .widget-label").first.wait_for(
                state="attached", timeout=WIDGET_TIMEOUT_MS
            )
            before = page.evaluate(_VISIBLE_IMAGE_JS, i)
            assert before, f"{page_path}: slider {i} has no visible figure in its .awp-stack"
            stack = page.locator(".awp-stack").nth(i)
            shot_before = stack.screenshot()
            handle = slider.locator(".noUi-handle").first
            handle.focus()
            handle.press("ArrowRight")
            try:
                page.wait_for_function(
                    f"(() => {{ const now = ({_VISIBLE_IMAGE_JS})({i}); "
                    f"return !!now && now !== {json.dumps(before)}; }})()",
                    timeout=5_000,
                )
            except Exception:
                pytest.fail(f"{page_path}: moving slider {i} did not change the figure in .awp-stack")
            after = page.evaluate(_VISIBLE_IMAGE_JS, i)
            assert after, f"{page_path}: slider {i}: no figure visible after moving the slider"
            assert stack.screenshot() != shot_before, f"{page_path}: slider {i}: stack looks the same"

        # Leave a moment for late errors (e.g. widget rendering promises).
        page.wait_for_timeout(200)
        widget_js = [u for u in external if "widget" in u or "require" in u]
        assert not widget_js, f"{page_path}: widget JS requested from the network: {widget_js}"
        assert not external, f"{page_path}: requests to non-local hosts: {external}"
        assert not problems, f"{page_path}:\n" + "\n".join(problems)
    finally:
        context.close()


def test_toc_lists_every_page_once():
    """The contents list the front page first, then every notebook and page of book/, once each."""
    pages = toc_pages()
    assert pages[0] == "book/intro.html"
    on_disk = {f"book/{p.stem}.html" for p in (REPO / "book").glob("*.ipynb")} | {
        f"book/{p.stem}.html" for p in (REPO / "book").glob("*.md")}
    assert sorted(pages) == sorted(on_disk) and len(set(pages)) == len(pages), pages


def _ext():
    sys.path.insert(0, str(REPO / "book" / "_ext"))
    import awp_book_html
    return awp_book_html


def configured_url() -> str:
    return (yaml.safe_load((REPO / "_config.yml").read_text()).get("repository") or {}).get("url") or ""


def test_notebook_sources_fit_the_page_and_install_as_configured():
    """Code cells within 88 columns; every Colab install line is the one ``_config.yml``'s
    repository.url gives (the clone when it is empty, the repository when it is set)."""
    import nbformat

    expected = _ext().install_line(configured_url())
    for page in toc_pages():
        path = REPO / page.replace(".html", ".ipynb")
        if not path.exists():
            continue
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if cell.cell_type != "code":
                continue
            for line in cell.source.splitlines():
                assert len(line) <= 88, f"{path.name} cell {i}: {len(line)} columns: {line!r}"
                if "pip install" in line:
                    assert line.strip() == expected, f"{path.name} cell {i}: {line!r}, not {expected!r}"


def test_repository_links_follow_the_configured_url():
    ext = _ext()
    theme = {"use_repository_button": False, "launch_buttons": {"colab_url": "https://colab.research.google.com"}}
    # unset: no repository, no launch buttons, and the install cells use the local clone
    unset = ext.repository_buttons({**theme, "repository_url": ""})
    assert unset["use_repository_button"] is False and unset["launch_buttons"] == {}
    assert ext.install_line("") == "!pip install -q -e .."
    # set to a real URL: both kept, pointing at it
    url = "https://github.com/example/awp-book"
    kept = ext.repository_buttons({**theme, "repository_url": url})
    assert kept["use_repository_button"] is True and kept["launch_buttons"]["colab_url"]
    assert kept["repository_url"] == url
    assert ext.install_line(url + "/") == f"!pip install -q git+{url}"
    # no placeholder anywhere in the sources
    for path in [REPO / "_config.yml", *(REPO / "book").glob("*.ipynb"), *(REPO / "book").glob("*.md")]:
        assert "awp-book/awp-book" not in path.read_text(), path
