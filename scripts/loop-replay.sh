#!/usr/bin/env bash
# Replays a short pretrain → finetune → align chain (each stage stopped and resumed once) with one
# `tinypoet` binary and records what it wrote, so that two builds can be compared byte for byte:
# stdout, stderr (durations masked), metrics.jsonl (without the wall-clock `train_time_s`) after
# every command, each checkpoint's SHA-256 with its wall-clock fields zeroed
# (`trainer/examples/checkpoint_digest.rs`) and the loss plot's SHA-256.
#
# Usage: scripts/loop-replay.sh BIN DATASET OUT_DIR
#   DATASET: `tinypoet prepare --from chinese-poetry-2.0.1.tgz -o tang.tpd` (the stages need its
#   finetune and alignment splits). Compare two builds with `diff -r OUT_A/record OUT_B/record`.
# The digest tool is built from this checkout unless DIGEST names a built one (the checkpoint
# format is the same for both builds).
set -euo pipefail
BIN=$(realpath "$1")
DATA=$(realpath "$2")
OUT=$3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${DIGEST:-}" ]; then
    (cd "$ROOT" && nice -n 10 cargo build -q --release -p tinypoet-trainer --example checkpoint_digest)
    DIGEST="$ROOT/target/release/examples/checkpoint_digest"
fi
DIGEST=$(realpath "$DIGEST")

rm -rf "$OUT"
mkdir -p "$OUT/record"
cd "$OUT" # relative paths: the logs and the stage records name the same files in every replay
n=0
step() { # step NAME RUN_DIR ARGS...: run one command and record its output and run directory
    local name=$1 dir=$2
    shift 2
    n=$((n + 1))
    local rec
    rec=record/$(printf '%02d' $n)-$name
    "$BIN" "$@" >"$rec.stdout" 2>"$rec.stderr.raw"
    sed -E 's/ in [0-9.]+ s/ in <t> s/' "$rec.stderr.raw" >"$rec.stderr" && rm "$rec.stderr.raw"
    python3 -c '
import json, sys
for line in open(sys.argv[1]):
    row = json.loads(line)
    row.pop("train_time_s", None)
    print(json.dumps(row, ensure_ascii=False, sort_keys=True))
' "$dir/metrics.jsonl" >"$rec.metrics"
    "$DIGEST" "$dir/checkpoint.ckpt" | cut -d' ' -f1-3 >"$rec.sha256"
    sha256sum "$dir/loss.svg" >>"$rec.sha256"
    cat "$rec.sha256"
}

SMALL=(--dim 32 --heads 2 --layers 2 --context 256 --ffn 64 --batch 8 --seq 64
    --eval-interval 10 --eval-batches 2 --sample-len 16 --no-progress --threads 2)
# Pretrain 20 steps (checkpoints every 10), then continue the same run to 40.
step pretrain pre train --data "$DATA" --out pre --steps 20 --checkpoint-every 10 "${SMALL[@]}"
step pretrain-resume pre train --data "$DATA" --out pre --resume pre --steps 40 "${SMALL[@]}"

# Finetune: 26 batches of 512 per epoch, 2 epochs; stopped after 30 updates (past the epoch
# boundary), then resumed to the end.
FT=(--batch 512 --epochs 2 --eval-interval 5 --sample-len 16 --checkpoint-every 10 --no-progress
    --threads 2)
step finetune ft finetune --data "$DATA" --from pre --out ft --stop-after 30 "${FT[@]}"
step finetune-resume ft finetune --data "$DATA" --resume ft --out ft "${FT[@]}"

# Align: 19 batches of 256 pairs per epoch, 2 epochs; stopped after 23 updates, then resumed.
AL=(--batch 256 --epochs 2 --eval-interval 5 --sample-len 16 --checkpoint-every 10 --no-progress
    --threads 2)
step align al align --data "$DATA" --from ft --out al --stop-after 23 "${AL[@]}"
step align-resume al align --data "$DATA" --resume al --out al "${AL[@]}"
