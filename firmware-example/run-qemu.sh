#!/usr/bin/env bash
# Build the firmware for QEMU mps2-an386 (Cortex-M4) and run it: the poem is
# streamed over semihosting, QEMU's exit status is the firmware's.
#
#   ./run-qemu.sh               generate a poem (default prompt 春夜喜雨, the core's default seed)
#   ./run-qemu.sh --measure     measurement build: 256 characters, no stop, figures
#
# Environment: TINYPOET_BLOB (model, default models/tinypoet-tang.tpb),
# TINYPOET_PROMPT, TINYPOET_SEED, TINYPOET_MAX_CHARS, TINYPOET_NO_STOP=1 (baked in at build
# time; the same meaning as `tinypoet generate PROMPT --seed --max-len --no-stop`),
# TINYPOET_FW_ROUTE=rustup|debian (toolchain route, default: rustup if it works).
# Installs what is missing: qemu-system-arm, and a toolchain (see env.sh).
set -euo pipefail
source "$(dirname "$0")/env.sh"

features=()
if [ "${1:-}" = "--measure" ]; then
    features=(--features measure)
    shift
fi

fw_need_qemu
fw_setup thumbv7em-none-eabihf
TINYPOET_BLOB=$(fw_blob)
export TINYPOET_BLOB
fw_log "blob: $TINYPOET_BLOB"

fw_cargo build --release --target thumbv7em-none-eabihf "${features[@]}" "$@" >&2
elf=$(fw_elf thumbv7em-none-eabihf)
python3 "$FW_DIR/elf.py" size "$elf" >&2
exec timeout "${TINYPOET_QEMU_TIMEOUT:-1200}" "${FW_QEMU[@]}" "$elf"
