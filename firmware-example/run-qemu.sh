#!/usr/bin/env bash
# Build the firmware for QEMU mps2-an386 (Cortex-M4) and run it; QEMU's exit status is the
# firmware's.
#
#   ./run-qemu.sh               the serial console on this terminal (UART0, -serial stdio): type a
#                               title (春夜喜雨 seed=7 temp=0.8), Ctrl-D on an empty line to quit
#   ./run-qemu.sh --oneshot     one poem over semihosting (build-time prompt, below)
#   ./run-qemu.sh --measure     measurement build: 256 characters, no stop, figures
#
# Environment: TINYPOET_BLOB (model, default models/tinypoet-tang-aligned.tpb),
# TINYPOET_PROMPT, TINYPOET_SEED, TINYPOET_MAX_CHARS, TINYPOET_NO_STOP=1 (--oneshot; baked in at build
# time; the same meaning as `tinypoet generate PROMPT --seed --max-len --no-stop`),
# TINYPOET_FW_ROUTE=rustup|debian (toolchain route, default: rustup if it works).
# Installs what is missing: qemu-system-arm, and a toolchain (see env.sh).
set -euo pipefail
source "$(dirname "$0")/env.sh"

features=()
qemu=("${FW_QEMU_CONSOLE[@]}")
case "${1:-}" in
    --measure) features=(--features measure); qemu=("${FW_QEMU[@]}"); shift ;;
    --oneshot) features=(--features oneshot); qemu=("${FW_QEMU[@]}"); shift ;;
esac

fw_need_qemu
fw_setup thumbv7em-none-eabihf
TINYPOET_BLOB=$(fw_blob)
export TINYPOET_BLOB
fw_log "blob: $TINYPOET_BLOB"

fw_cargo build --release --target thumbv7em-none-eabihf "${features[@]}" "$@" >&2
elf=$(fw_elf thumbv7em-none-eabihf)
python3 "$FW_DIR/elf.py" size "$elf" >&2
[ ${#features[@]} = 0 ] && fw_log "console on UART0: type a title and Enter; Ctrl-D on an empty line quits"
exec timeout "${TINYPOET_QEMU_TIMEOUT:-1200}" "${qemu[@]}" "$elf"
