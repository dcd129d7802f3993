#!/usr/bin/env bash
# Fetch the ipywidgets JavaScript that the built pages need, so that widgets
# render without any CDN (offline, or behind a firewall).
#
#   requirejs                      -> require.js (AMD loader used by embed-amd.js)
#   @jupyter-widgets/html-manager  -> dist/embed-amd.js (bundles @jupyter-widgets/base,
#                                     controls and output as named AMD modules, plus CSS)
#                                     and the Font Awesome files it references.
#   mathjax@3                      -> es5/tex-mml-chtml.js and the components and fonts
#                                     it loads on demand (Sphinx loads MathJax from a CDN
#                                     by default).
#
# The files land in book/_vendor_js/{_widgets,_mathjax}/ (git-ignored). _config.yml copies
# book/_vendor_js into the build root with `html_extra_path` and points myst-nb's
# `nb_ipywidgets_js` and Sphinx's `mathjax_path` at it. It is deliberately NOT a
# `_static/` folder: Jupyter Book injects every .js under `_static/` into every page.
#
# Idempotent: does nothing when the pinned versions are already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUIREJS_VERSION=2.3.7
REQUIREJS_SHA256=31f3330c978fb28684622fe71165dc946432cf0210b2ea8a1ca0233e70f2737d
HTML_MANAGER_VERSION=1.0.15
HTML_MANAGER_SHA256=2b9d65cb7913e1c7d671757a10008b32c9c2448d4429513371e55c07d6107638
MATHJAX_VERSION=3.2.2
MATHJAX_SHA256=1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09

ROOT=book/_vendor_js
DEST=$ROOT/_widgets
MJ_DEST=$ROOT/_mathjax
STAMP="$ROOT/.versions"
WANT="requirejs@$REQUIREJS_VERSION @jupyter-widgets/html-manager@$HTML_MANAGER_VERSION mathjax@$MATHJAX_VERSION"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -s "$DEST/require.js" && -s "$DEST/embed-amd.js" \
      && -s "$MJ_DEST/tex-mml-chtml.js" ]]; then
    # Our own loader config (committed in tools/) is copied every time: it is tiny.
    cmp -s tools/widgets-config.js "$DEST/config.js" || cp tools/widgets-config.js "$DEST/config.js"
    echo "offline JS up to date ($WANT)"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm is needed to fetch the widget JavaScript (apt-get install npm)" >&2
    exit 1
fi

CACHE=.cache/npm
mkdir -p "$CACHE"
check() {  # file sha256
    echo "$2  $1" | sha256sum -c --quiet - || { echo "error: checksum mismatch for $1" >&2; rm -f "$1"; exit 1; }
}
req_tgz="$CACHE/requirejs-$REQUIREJS_VERSION.tgz"
hm_tgz="$CACHE/jupyter-widgets-html-manager-$HTML_MANAGER_VERSION.tgz"
mj_tgz="$CACHE/mathjax-$MATHJAX_VERSION.tgz"
# `npm pack` only downloads the published tarball: no install scripts, no dependency tree.
[[ -s "$req_tgz" ]] || npm pack --silent --pack-destination "$CACHE" "requirejs@$REQUIREJS_VERSION" >/dev/null
[[ -s "$hm_tgz" ]] || npm pack --silent --pack-destination "$CACHE" "@jupyter-widgets/html-manager@$HTML_MANAGER_VERSION" >/dev/null
[[ -s "$mj_tgz" ]] || npm pack --silent --pack-destination "$CACHE" "mathjax@$MATHJAX_VERSION" >/dev/null
check "$req_tgz" "$REQUIREJS_SHA256"
check "$hm_tgz" "$HTML_MANAGER_SHA256"
check "$mj_tgz" "$MATHJAX_SHA256"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/req" "$tmp/hm" "$tmp/mj"
tar -xzf "$req_tgz" -C "$tmp/req"
tar -xzf "$hm_tgz" -C "$tmp/hm"
tar -xzf "$mj_tgz" -C "$tmp/mj"

rm -rf "$ROOT"
mkdir -p "$DEST" "$MJ_DEST"
cp "$tmp/req/package/require.js" "$DEST/require.js"
cp tools/widgets-config.js "$DEST/config.js"
cp "$tmp/hm/package/dist/embed-amd.js" "$DEST/embed-amd.js"
# Font Awesome files; embed-amd.js resolves them relative to its own URL.
cp "$tmp/hm/package/dist/"*.{woff,woff2,ttf,eot,svg} "$DEST/"
# MathJax: the combined TeX/MathML + CommonHTML bundle, plus what it loads on demand
# (TeX extensions, CHTML fonts, menu/accessibility components).
es5="$tmp/mj/package/es5"
cp "$es5/tex-mml-chtml.js" "$MJ_DEST/"
mkdir -p "$MJ_DEST/output"
cp -r "$es5/input" "$es5/a11y" "$es5/ui" "$es5/sre" "$es5/adaptors" "$MJ_DEST/"
cp -r "$es5/output/chtml" "$MJ_DEST/output/"
cp "$es5/output/chtml.js" "$MJ_DEST/output/" 2>/dev/null || true
cp "$tmp/mj/package/LICENSE" "$MJ_DEST/LICENSE" 2>/dev/null || true
echo "$WANT" > "$STAMP"
echo "offline JS fetched into $ROOT ($WANT)"
