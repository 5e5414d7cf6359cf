#!/usr/bin/env bash
# The page in a real browser: headless Chromium (Debian's package; playwright-core from npm
# drives it and downloads no browser) opens the page served by `tinypoet serve` on 127.0.0.1,
# writes poems for fixed titles and seeds, and each must equal the host's `tinypoet generate`
# text. Saves a screenshot to target/web-test/web.png (docs/figures/web.png is a copy).
#
#   bash web/test-browser.sh [--bench]      --bench: also the page's characters per second
#
# Installs what is missing: chromium and a CJK font (apt-get), playwright-core (npm, into
# target/web-test/), the wasm32-unknown-unknown target (web/build.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BENCH=()
if [ "${1:-}" = "--bench" ]; then BENCH=(--bench-chars 200 --bench-runs 5); fi

PLAYWRIGHT_CORE=playwright-core@1.65.1
WORK="$ROOT/target/web-test"
mkdir -p "$WORK"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# Without a CJK font the screenshot shows boxes (the text comparison does not depend on it).
dpkg -s fonts-wqy-zenhei >/dev/null 2>&1 || missing+=(fonts-wqy-zenhei)
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
if [ ! -f "$WORK/node_modules/playwright-core/package.json" ]; then
    npm install --silent --no-audit --no-fund --prefix "$WORK" "$PLAYWRIGHT_CORE" >&2
fi

bash web/build.sh
cargo build --quiet --release -p tinypoet-trainer
TP="$ROOT/target/release/tinypoet"
MODEL=models/tinypoet-tang-int8.tpb

"$TP" serve --addr 127.0.0.1:0 --model "$MODEL" >"$WORK/serve.url" 2>"$WORK/serve.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    [ -s "$WORK/serve.url" ] && break
    kill -0 $SERVER 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
    sleep 0.1
done
URL=$(head -1 "$WORK/serve.url")
echo "tinypoet serve: $URL" >&2

passed=0
failed=0
# case: title typed in the page, the host's prompt (traditional), seed, extra arguments
run_case() {
    local typed=$1 host=$2 seed=$3
    shift 3
    "$TP" generate "$host" --seed "$seed" --model "$MODEL" >"$WORK/expected-$seed.txt" 2>/dev/null
    echo "--- page title $typed, seed $seed (host: tinypoet generate $host --seed $seed)"
    if node web/test/browser.mjs --url "$URL" --title "$typed" --seed "$seed" \
        --expect "$WORK/expected-$seed.txt" "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
}
run_case 春夜喜雨 春夜喜雨 7 --screenshot "$WORK/web.png" "${BENCH[@]}"
# Simplified input: the page converts 静 to 靜 and says so.
run_case 静夜思 靜夜思 3

echo "screenshot: $WORK/web.png"
echo "browser: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
