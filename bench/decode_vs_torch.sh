#!/usr/bin/env bash
# Decoding speed of tinypoet-core vs a KV-cached PyTorch decode of a model of the same shape,
# measured side by side in one session (one thread each; rounds alternate so both see the same
# load). The core runs the bundled f16 model (`tinypoet bench decode`), PyTorch random weights
# of the same shape: the cost of a step does not depend on the weights' values.
#
#   bench/decode_vs_torch.sh [ROUNDS=3] [REPS=20]
#
# Prints each round and the ratio of the best (and of the median) chars/s.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
REPS=${2:-20}
cargo build --release -q -p tinypoet-trainer
BIN="${CARGO_TARGET_DIR:-target}/release/tinypoet"
OUT=$(mktemp)
for r in $(seq "$ROUNDS"); do
    # 1 prompt character + 255 generated = the whole context, as torch_decode.py runs it.
    "$BIN" bench decode --backend fastest --prompt 春 --chars 255 --runs "$REPS" --json | sed 's/^/core /' | tee -a "$OUT"
    python3 bench/torch_decode.py --reps "$((REPS / 4 + 1))" --json 2>/dev/null | sed 's/^/torch /' | tee -a "$OUT"
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [l.split(" ", 1) for l in open(sys.argv[1])]
core = [json.loads(j) for k, j in rows if k == "core"]
torch = [json.loads(j) for k, j in rows if k == "torch"]
cb = max(c["best_chars_per_s"] for c in core); tb = max(t["best_chars_per_s"] for t in torch)
cm = statistics.median(c["median_chars_per_s"] for c in core); tm = statistics.median(t["median_chars_per_s"] for t in torch)
loads = [r["load1"] for r in core + torch]
cc = max(c["cpu_chars_per_s"] for c in core); tc = max(t["cpu_chars_per_s"] for t in torch)
print(f"tinypoet-core ({core[0]['backend']}, KV {core[0]['kv']}): best {cb:.0f} chars/s, median {cm:.0f}")
print(f"PyTorch {torch[0]['torch']} (1 thread, KV cache):  best {tb:.0f} chars/s, median {tm:.0f}")
print(f"per CPU second: tinypoet-core {cc:.0f} chars/s, PyTorch {tc:.0f} chars/s")
print(f"ratio best/best {cb / tb:.1f}x, median/median {cm / tm:.1f}x, per CPU second {cc / tc:.1f}x; "
      f"load average {min(loads):.2f}..{max(loads):.2f} on {__import__('os').cpu_count()} CPUs")
PY
rm -f "$OUT"
