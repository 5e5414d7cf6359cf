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
MODEL=models/tinypoet-tang-aligned-int8.tpb

# The server prints its URL (any free port) alone on stdout. The file is removed first: the
# background job truncates it only once it runs.
rm -f "$WORK/serve.url"
"$TP" serve --addr 127.0.0.1:0 --model "$MODEL" >"$WORK/serve.url" 2>"$WORK/serve.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
URL=""
for _ in $(seq 300); do
    URL=$(grep -m1 '^http://.*/$' "$WORK/serve.url" 2>/dev/null || true)
    [ -n "$URL" ] && break
    kill -0 $SERVER 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$URL" ] || { echo "tinypoet serve printed no URL in 30 s" >&2; cat "$WORK/serve.log" >&2; exit 1; }
echo "tinypoet serve: $URL" >&2

passed=0
failed=0
# case: mode (title|text), what is typed in the page and on the host's command line, seed,
# form ("" or 五絕 ...), acrostic ("" or characters), extra arguments of browser.mjs. The host
# and the page convert simplified input with the same table (tinypoet_core::simplified).
run_case() {
    local mode=$1 typed=$2 seed=$3 form=$4 acrostic=$5
    shift 5
    local host_args=("$typed")
    if [ "$mode" = title ]; then host_args=(--title "$typed"); fi
    if [ -n "$form" ]; then
        host_args+=(--form "$form")
        set -- --form "$form" "$@"
    fi
    if [ -n "$acrostic" ]; then
        host_args+=(--acrostic "$acrostic")
        set -- --acrostic "$acrostic" "$@"
    fi
    local expect="$WORK/expected-$mode-$seed$form.txt"
    "$TP" generate "${host_args[@]}" --seed "$seed" --model "$MODEL" >"$expect" 2>/dev/null
    echo "--- page: $mode $typed, seed $seed $form $acrostic (host: tinypoet generate ${host_args[*]} --seed $seed)"
    if node web/test/browser.mjs --url "$URL" --mode "$mode" --title "$typed" --seed "$seed" \
        --expect "$expect" "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
}
# Simplified input: 静 becomes 靜, and the page says so.
run_case title 静夜思 7 "" ""
# --bench: 200 characters after 春夜喜雨, as `tinypoet bench decode` measures natively.
run_case text 春夜喜雨 7 "" "" "${BENCH[@]}"
run_case text 白日依山 3 "" ""
# A form with a simplified acrostic (东 becomes 東), from a title and from the first characters.
run_case title 春夜喜雨 5 五絕 东南西北 --screenshot "$WORK/web.png"
run_case text 江南 2 七絕 ""

echo "screenshot: $WORK/web.png"
echo "browser: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
