#!/usr/bin/env bash
# Build the browser page: tinypoet-core compiled to WebAssembly (the tinypoet-web crate, profile
# `web`) and the static files of web/www, assembled with the int8 model into web/dist/
# (build output, not committed; `tinypoet serve` serves it).
#
#   bash web/build.sh [--model BLOB]     (default models/tinypoet-tang-aligned-int8.tpb)
#
# Needs only cargo and the wasm32-unknown-unknown target (rustup target add
# wasm32-unknown-unknown, which this script tries when it is missing). No wasm-bindgen, no
# wasm-pack, no bundler: the module exports a plain C ABI and the page has no dependencies.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

MODEL=models/tinypoet-tang-aligned-int8.tpb
while [ $# -gt 0 ]; do
    case "$1" in
        --model) MODEL=$2; shift 2 ;;
        *) echo "usage: bash web/build.sh [--model BLOB]" >&2; exit 2 ;;
    esac
done
[ -f "$MODEL" ] || { echo "error: model $MODEL not found" >&2; exit 1; }

TARGET=wasm32-unknown-unknown
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi
cargo build --quiet -p tinypoet-web --profile web --target "$TARGET"
WASM="$ROOT/target/$TARGET/web/tinypoet_web.wasm"

DIST="$ROOT/web/dist"
rm -rf "$DIST.tmp"
mkdir -p "$DIST.tmp"
cp web/www/index.html web/www/main.js web/www/worker.js "$DIST.tmp/"
cp "$WASM" "$DIST.tmp/tinypoet.wasm"
cp "$MODEL" "$DIST.tmp/model.tpb"
rm -rf "$DIST"
mv "$DIST.tmp" "$DIST"
echo "web/dist: $(stat -c %s "$DIST/tinypoet.wasm") bytes of wasm, $(stat -c %s "$DIST/model.tpb") bytes of model" >&2
