#!/usr/bin/env bash
# Copies the pinned third-party browser code into webui/assets/vendor.
# Run it after changing package.json; commit package-lock.json and the
# copied files. The broker serves the committed copies, so neither `go run`
# nor `go test` needs Node.js.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
dst=../assets/vendor/uplot
mkdir -p "$dst"
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css "$dst/"
cp node_modules/uplot/LICENSE "$dst/LICENSE"
echo "uplot $(node -p 'require("./node_modules/uplot/package.json").version')" > "$dst/VERSION"
