#!/usr/bin/env bash
# Fuzz the blob parser with cargo-fuzz (nightly): fuzz/run.sh [RUNS=10000000]
# Seeds: fuzz/seeds (committed, README.md: valid blobs and structure-aware re-sealed mutations
# of them; checked against their generator first) plus the working corpus corpus/parse_blob
# (what libFuzzer adds; not committed); prints libFuzzer's final stats.
# `-s none`: no sanitizer (the core is safe Rust apart from bounds-checked SIMD kernels; ASan
# cuts throughput ~8x). For an ASan run: cargo +nightly fuzz run parse_blob corpus/parse_blob seeds.
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${1:-10000000}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo +nightly run --release -q --bin make_seeds -- --check seeds
mkdir -p corpus/parse_blob
start=$(date +%s)
cargo +nightly fuzz run -s none parse_blob corpus/parse_blob seeds -- -runs="$RUNS" -max_len=8192 -print_final_stats=1 2>&1 | tee fuzz.log | grep -E "^(#[0-9]+[[:space:]]+(DONE|INITED)|INFO: seed corpus|stat::|Done|==)" || true
echo "wall seconds: $(( $(date +%s) - start ))"
grep -q "Done $RUNS runs" fuzz.log && ! grep -q "panicked\|deadly signal\|ERROR: libFuzzer" fuzz.log
