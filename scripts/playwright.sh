#!/usr/bin/env bash
# Installs playwright-core (the browser tests' driver; it never downloads a browser: the tests
# use Debian's chromium) into the user cache if missing and prints the package's folder.
set -euo pipefail
dir="$HOME/.cache/cloudyknight/playwright"
pkg="$dir/node_modules/playwright-core"
if [ ! -f "$pkg/package.json" ]; then
  mkdir -p "$dir"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$dir" --no-audit --no-fund --silent \
    playwright-core@1 >/dev/null 2>&1 \
    || { echo "playwright.sh: npm install playwright-core@1 failed" >&2; exit 1; }
fi
echo "$pkg"
