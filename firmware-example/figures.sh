#!/usr/bin/env bash
# The firmware's figures, as used in docs/results-firmware.md:
#   * flash (weights, code) and static RAM of the shipping QEMU build, read from the ELF;
#   * the measurement build under QEMU -icount: instructions per generated character (mean of
#     256 from 春夜喜雨 with the default sampler and seed, stop ignored), prefill, worst
#     character, the slide, and where the instructions go; the stack high-water mark.
# Usage: ./figures.sh [OUT.md]     (TINYPOET_BLOB as for run-qemu.sh; default model by default)
set -euo pipefail
source "$(dirname "$0")/env.sh"

out=${1:-/dev/stdout}
fw_need_qemu
fw_setup thumbv7em-none-eabihf
TINYPOET_BLOB=$(fw_blob)
export TINYPOET_BLOB
unset TINYPOET_PROMPT TINYPOET_SEED TINYPOET_MAX_CHARS TINYPOET_NO_STOP
elf=$(fw_elf thumbv7em-none-eabihf)

fw_cargo build --release --target thumbv7em-none-eabihf >&2
sizes=$(python3 "$FW_DIR/elf.py" size "$elf")
fw_cargo build --release --target thumbv7em-none-eabihf --features measure >&2
log=$(mktemp)
timeout "${TINYPOET_QEMU_TIMEOUT:-1800}" "${FW_QEMU[@]}" "$elf" >"$log"

{
    echo "blob: $(basename "$TINYPOET_BLOB") ($(stat -c %s "$TINYPOET_BLOB") bytes, sha256 $(sha256sum "$TINYPOET_BLOB" | cut -c1-16)…)"
    echo "toolchain: $(rustc --version) ($FW_ROUTE route), $(qemu-system-arm --version | head -1)"
    echo
    echo "shipping build (cargo build --release), from the ELF:"
    echo "$sizes" | sed 's/^/    /'
    echo
    echo "measurement build (--features measure) under ${FW_QEMU[*]}:"
    sed -n '/^kernel check/p; /^int8 kernel check/p; /^streaming API/p; /^== figures/,$p' "$log" | sed 's/^/    /'
} >"$out"
rm -f "$log"
