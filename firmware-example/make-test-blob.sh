#!/usr/bin/env bash
# Make a trained blob for the firmware test when the repository has no default model
# (models/tinypoet-tang.tpb): a short seeded training run on the real corpus, then export.
# Prints the blob's path on stdout (logs go to stderr). The result is cached under
# firmware-example/target/test-blob/ and reused.
#
#   TINYPOET_TEST_STEPS   training steps (default 300)
#   TINYPOET_CORPUS_TGZ   chinese-poetry-2.0.1.tgz (default: scripts/fetch-corpus.sh)
set -euo pipefail
source "$(dirname "$0")/env.sh"

STEPS=${TINYPOET_TEST_STEPS:-300}
DIR=$FW_TARGET_DIR/test-blob
BLOB=$DIR/tinypoet-test-${STEPS}steps.tpb
if [ -f "$BLOB" ]; then
    echo "$BLOB"
    exit 0
fi
mkdir -p "$DIR"
fw_log "no default model (models/tinypoet-tang.tpb): training a test model, $STEPS steps (cached in $DIR)"
tgz=${TINYPOET_CORPUS_TGZ:-$(bash "$REPO_DIR/scripts/fetch-corpus.sh")}
host_cargo build --release -p tinypoet-trainer >&2
tp=$HOST_TARGET_DIR/release/tinypoet
"$tp" prepare --from "$tgz" -o "$DIR/tang.tpd" >&2
rm -rf "$DIR/run"
"$tp" train --data "$DIR/tang.tpd" -o "$DIR/run" --steps "$STEPS" --seed 2024 \
    --eval-interval "$STEPS" --eval-batches 10 --no-progress >&2
"$tp" export "$DIR/run" -o "$BLOB.tmp" >&2
mv "$BLOB.tmp" "$BLOB"
echo "$BLOB"
