#!/usr/bin/env bash
# Installs s3rver 3 (a local S3 stand-in for the S3 client's tests) into the user cache if
# missing and prints the path of its executable.
set -euo pipefail
dir="$HOME/.cache/cloudyknight/s3rver"
bin="$dir/node_modules/.bin/s3rver"
if [ ! -x "$bin" ]; then
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --silent s3rver@3 >/dev/null 2>&1 \
    || { echo "s3rver.sh: npm install s3rver@3 failed" >&2; exit 1; }
fi
echo "$bin"
