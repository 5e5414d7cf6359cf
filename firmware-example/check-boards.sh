#!/usr/bin/env bash
# Real-board builds: each ELF must build with the model (the serial console: USB CDC-ACM on the
# boards, UART0 under QEMU), carry its boot header, and be written as what the board's loader
# takes: target/boards/pico2.uf2 (drag onto the RP2350 boot drive, or picotool load),
# target/boards/pico.uf2 (the RP2040's RPI-RP2 drive) and target/boards/teensy41.hex
# (teensy_loader_cli / the Teensy Loader). Prints flash and RAM use.
#   Teensy 4.1 (i.MX RT1062, thumbv7em-none-eabihf): FlexSPI configuration block
#     "FCFB" (8 MiB) at 0x60000000, IVT at 0x60001000 whose entry is Reset, boot
#     data covering the weights.
#   Raspberry Pi Pico 2 (RP2350, thumbv8m.main-none-eabihf): IMAGE_DEF block
#     within the first 4 KiB of flash, vector table at 0x10000000.
#   Raspberry Pi Pico (RP2040, thumbv6m-none-eabi): boot2 with a valid CRC-32 at 0x10000000,
#     vector table at 0x10000100, flash and RAM (statics + stack) within 2 MiB / 264 KiB.
#   QEMU mps2-an386: vector table at 0.
# The checks read the ELF's load image with elf.py (no binutils needed). They
# prove the images are laid out as the boot ROMs require; they were not run on
# hardware here.
set -euo pipefail
source "$(dirname "$0")/env.sh"

fw_setup thumbv7em-none-eabihf thumbv8m.main-none-eabihf thumbv6m-none-eabi
TINYPOET_BLOB=$(fw_blob)
export TINYPOET_BLOB
fw_log "blob: $TINYPOET_BLOB"

check() { # board target check [image-kind image-ext]   (env: EXTRA_FEATURES, NAME)
    local board=$1 target=$2 what=$3 kind=${4:-} ext=${5:-}
    local name=${NAME:-$board} features="board-$board${EXTRA_FEATURES:+,$EXTRA_FEATURES}"
    fw_log "building $name ($target, features $features)"
    fw_cargo build --release --no-default-features --features "$features" --target "$target" >&2
    local out=$FW_TARGET_DIR/boards/$name.elf
    mkdir -p "$(dirname "$out")"
    cp "$(fw_elf "$target")" "$out"
    python3 "$FW_DIR/elf.py" size "$out"
    python3 "$FW_DIR/elf.py" "check-$what" "$out"
    if [ -n "$kind" ]; then
        python3 "$FW_DIR/elf.py" "$kind" "$out" "${out%.elf}.$ext"
    fi
}

check teensy41 thumbv7em-none-eabihf teensy41 ihex hex
check pico2 thumbv8m.main-none-eabihf pico2 uf2 uf2
# The Pico 2 console over RTT (a debug probe: probe-rs attach/run) instead of USB; the RTT
# control block must be in the ELF for the probe to find it.
EXTRA_FEATURES=rtt NAME=pico2-rtt check pico2 thumbv8m.main-none-eabihf pico2 uf2 uf2
python3 "$FW_DIR/elf.py" check-rtt "$FW_TARGET_DIR/boards/pico2-rtt.elf"
check mps2-an386 thumbv7em-none-eabihf mps2
# Raspberry Pi Pico (RP2040, thumbv6m-none-eabi): the int8 blob (the f16 one is 2.67 MB, more
# than the 2 MB flash), the console over USB CDC-ACM (its USB identity is the console crate's
# `usb::PICO`, whose descriptors console/tests/usb.rs checks on a simulated bus; here: that the
# image carries its product string), and the UF2 file for the boot loader's USB drive. Then the
# one-poem semihosting build (`oneshot`, 133 MHz) as pico-oneshot.
PICO_BLOB=${TINYPOET_INT8_BLOB:-$REPO_DIR/models/tinypoet-tang-int8.tpb}
TINYPOET_BLOB=$PICO_BLOB check pico thumbv6m-none-eabi pico
python3 - "$FW_TARGET_DIR/boards/pico.elf" <<'PY'
import sys
product = "tinypoet console (Pico)".encode()
if product not in open(sys.argv[1], "rb").read():
    sys.exit(f"{sys.argv[1]}: no USB product string {product!r}: not the Pico console")
print(f"ok: USB product string {product.decode()!r} in the image")
PY
python3 "$FW_DIR/uf2.py" "$FW_TARGET_DIR/boards/pico.elf" "$FW_TARGET_DIR/boards/pico.uf2" --family rp2040
EXTRA_FEATURES=oneshot NAME=pico-oneshot TINYPOET_BLOB=$PICO_BLOB check pico thumbv6m-none-eabi pico
python3 "$FW_DIR/uf2.py" "$FW_TARGET_DIR/boards/pico-oneshot.elf" "$FW_TARGET_DIR/boards/pico-oneshot.uf2" --family rp2040
echo "check-boards: 6 passed, 0 failed"
