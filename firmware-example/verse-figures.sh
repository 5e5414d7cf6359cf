#!/usr/bin/env bash
# Cost of the verse constraint on the Cortex-M4: the oneshot build under QEMU
# -icount, the same prompt (春夜喜雨 + newline) and seed, 71 sampled tokens each (a whole 七律
# with its end-of-text), with and without TINYPOET_FORM. Prints each run's instruction line.
# Usage: ./verse-figures.sh   (TINYPOET_BLOB as for run-qemu.sh; default model by default)
set -euo pipefail
source "$(dirname "$0")/env.sh"
fw_need_qemu
fw_setup thumbv7em-none-eabihf
TINYPOET_BLOB=$(fw_blob)
export TINYPOET_BLOB TINYPOET_SEED=${TINYPOET_SEED:-2024} TINYPOET_MAX_CHARS=71
elf=$(fw_elf thumbv7em-none-eabihf)

# one NAME: build and run with the current environment
one() {
    fw_cargo build --release --target thumbv7em-none-eabihf --features oneshot >&2
    local log
    log=$(timeout "${TINYPOET_QEMU_TIMEOUT:-900}" "${FW_QEMU[@]}" "$elf")
    echo "$1:"
    echo "$log" | sed -n '/^----- poem -----$/,/^----- end -----$/p' | sed 's/^/    /'
    echo "$log" | grep -E "^[0-9]+ characters" | sed 's/^/    /'
}

(export TINYPOET_PROMPT=$'春夜喜雨\n' TINYPOET_NO_STOP=1; unset TINYPOET_FORM; one "unconstrained (no stop, 71 tokens)")
(export TINYPOET_PROMPT=春夜喜雨 TINYPOET_FORM=七律; unset TINYPOET_NO_STOP; one "七律")
(export TINYPOET_PROMPT=春夜喜雨 TINYPOET_FORM="七律 acrostic=春夜喜雨秋風明月 rhyme"; unset TINYPOET_NO_STOP; one "七律 + acrostic + rhyme")
