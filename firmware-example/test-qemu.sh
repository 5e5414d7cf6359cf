#!/usr/bin/env bash
# Determinism tests of the firmware under QEMU (Cortex-M4, mps2-an386), each checked byte for byte
# against `tinypoet generate` on the host with the same blob, prompt, seed and settings:
#   1. console: the default build; console-test.py types several titles with settings
#      and two bad lines into UART0 through a pipe and compares every poem with the host's; the
#      bad lines must get one `error:` line each and the console must go on. Once with the f16
#      blob, once with the int8 blob (the SXTB16/SMLAD kernel on the device, the portable or AVX
#      int8 kernels on the host).
#   1b. RTT console: the `--features rtt` build; console-test.py --rtt types a shorter
#      session into RTT down channel 0 and reads up channel 0 through QEMU's gdbstub (rttprobe.py,
#      what a debug probe does over SWD), poems compared with the host as above.
#   2. oneshot: the build-time-prompt build (`--features oneshot`, default prompt
#      春夜喜雨, default sampler, stop at the end of the poem), the poem over semihosting.
#   3. verse: the oneshot build with TINYPOET_FORM (七絕 acrostic=春夜喜雨 rhyme) against
#      tinypoet generate --form 七絕 --acrostic 春夜喜雨 --rhyme.
#   4. ARMv6-M: the builds for thumbv6m-none-eabi (the RP2040's Cortex-M0+ code, soft
#      float, int8 KV cache) on mps2-an385 (a Cortex-M3 running it), with the int8 blob, against
#      `tinypoet generate --kv int8` on the host: the console (the Pico's, over UART0) and the
#      oneshot build (the default poem and 200 characters).
# f16 blob: TINYPOET_BLOB, else models/tinypoet-tang.tpb, else a short training run
# (make-test-blob.sh). int8 blob: TINYPOET_INT8_BLOB, else models/tinypoet-tang-int8.tpb
# (TINYPOET_INT8_BLOB=none skips the int8 session).
# Exit 0 only if every case passes; a summary line "N passed, M failed" closes the output.
set -euo pipefail
source "$(dirname "$0")/env.sh"

PROMPT=${TINYPOET_PROMPT:-春夜喜雨}
fw_need_qemu
fw_setup thumbv7em-none-eabihf thumbv6m-none-eabi
BLOB=$(fw_blob)
BLOB=$(cd "$(dirname "$BLOB")" && pwd)/$(basename "$BLOB")
case "$BLOB" in
    "$REPO_DIR/models/"*) fw_log "blob: $BLOB (the project's default model)" ;;
    "$FW_TARGET_DIR/test-blob/"*) fw_log "blob: $BLOB (short test training run: no default model yet)" ;;
    *) fw_log "blob: $BLOB (TINYPOET_BLOB)" ;;
esac

host_cargo build --release -p tinypoet-trainer >&2
TP=$HOST_TARGET_DIR/release/tinypoet
WORK=$FW_TARGET_DIR/test-qemu
mkdir -p "$WORK"
passed=0
failed=0
# The build under test (the ARMv6-M cases below change these).
FW_TARGET=thumbv7em-none-eabihf
FW_FEATURES=(--features oneshot)
HOST_KV=()
QEMU_CMD=("${FW_QEMU[@]}")

# Every case also bounds the firmware's stack high-water mark (printed when the run ends; the
# stack region is 64 KiB, 32 KiB on ARMv6-M): TINYPOET_STACK_LIMIT bytes, default 10 KiB.
STACK_LIMIT=${TINYPOET_STACK_LIMIT:-10240}

# stack_within_limit NAME FILE: FILE (the run's output) reports a stack high-water mark of at
# most STACK_LIMIT bytes; prints it, or a FAIL line.
stack_within_limit() {
    local used
    used=$(grep -ao 'stack high-water mark: [0-9]*' "$2" | grep -o '[0-9]*$' || true)
    if [ -z "$used" ]; then
        echo "FAIL $1: no stack high-water mark in $2"; return 1
    fi
    if [ "$used" -gt "$STACK_LIMIT" ]; then
        echo "FAIL $1: stack high-water mark $used bytes > $STACK_LIMIT (TINYPOET_STACK_LIMIT)"; return 1
    fi
    echo "       stack high-water mark: $used bytes (limit $STACK_LIMIT)"
}

# console_case NAME [console-test.py option...]  (blob: $BLOB; build: $CONSOLE_TARGET with
# CONSOLE_FEATURES, run by CONSOLE_QEMU): the console session of console-test.py
CONSOLE_TARGET=thumbv7em-none-eabihf
CONSOLE_FEATURES=()
CONSOLE_QEMU=("${FW_QEMU_CONSOLE[@]}")
console_case() {
    local name=$1
    shift
    fw_log "case $name: console session over UART0 ($BLOB, $CONSOLE_TARGET ${CONSOLE_FEATURES[*]})"
    (
        export TINYPOET_BLOB=$BLOB
        fw_cargo build --release --target "$CONSOLE_TARGET" "${CONSOLE_FEATURES[@]}" >&2
    )
    local rc=0
    python3 "$FW_DIR/console-test.py" "$@" "$TP" "$BLOB" "$(fw_elf "$CONSOLE_TARGET")" \
        "$WORK/$name.transcript.txt" -- "${CONSOLE_QEMU[@]}" | sed 's/^/       /' || rc=$?
    if [ "$rc" != 0 ]; then
        echo "FAIL $name: see above; transcript $WORK/$name.transcript.txt"
        failed=$((failed + 1)); return
    fi
    echo "ok   $name: every poem == host, bad lines answered with one error line"
    sed 's/^/       | /' "$WORK/$name.transcript.txt"
    stack_within_limit "$name" "$WORK/$name.transcript.txt" || { failed=$((failed + 1)); return; }
    passed=$((passed + 1))
}

# rtt_case NAME  (blob: $BLOB): the RTT build's console (`--features rtt`), console-test.py --rtt
# acting as the debug probe through QEMU's gdbstub (rttprobe.py).
rtt_case() {
    local name=$1
    fw_log "case $name: console session over RTT through the gdbstub ($BLOB)"
    (
        export TINYPOET_BLOB=$BLOB
        fw_cargo build --release --target thumbv7em-none-eabihf --features rtt >&2
    )
    cp "$(fw_elf thumbv7em-none-eabihf)" "$WORK/$name.elf"
    local rc=0
    python3 "$FW_DIR/console-test.py" --rtt "$TP" "$BLOB" "$WORK/$name.elf" \
        "$WORK/$name.transcript.txt" -- "${FW_QEMU_CONSOLE[@]}" | sed 's/^/       /' || rc=$?
    if [ "$rc" != 0 ]; then
        echo "FAIL $name: see above; transcript $WORK/$name.transcript.txt"
        failed=$((failed + 1)); return
    fi
    echo "ok   $name: RTT console (probe emulated over the gdbstub): every poem == host"
    sed 's/^/       | /' "$WORK/$name.transcript.txt"
    passed=$((passed + 1))
}

# run_case NAME SEED MAX_LEN NO_STOP(0|1) MIN_CHARS [FORM_SPEC HOST_FLAG...]  (blob: $BLOB): the
# oneshot build; FORM_SPEC is the firmware's TINYPOET_FORM, the HOST_FLAGs the same request for the CLI.
run_case() {
    local name=$1 seed=$2 max=$3 nostop=$4 min=$5 form=${6:-}
    shift 5; [ $# -gt 0 ] && shift
    local host=$WORK/$name.host.txt fw=$WORK/$name.qemu.log text=$WORK/$name.qemu.txt
    local flags=(--model "$BLOB" --seed "$seed" --max-len "$max" "${HOST_KV[@]}" "$@")
    [ "$nostop" = 1 ] && flags+=(--no-stop)
    fw_log "case $name: tinypoet generate ${flags[*]} $PROMPT"
    "$TP" generate "${flags[@]}" "$PROMPT" >"$host"

    (
        export TINYPOET_BLOB=$BLOB TINYPOET_PROMPT=$PROMPT TINYPOET_SEED=$seed TINYPOET_MAX_CHARS=$max
        if [ -n "$form" ]; then export TINYPOET_FORM=$form; else unset TINYPOET_FORM; fi
        if [ "$nostop" = 1 ]; then export TINYPOET_NO_STOP=1; else unset TINYPOET_NO_STOP; fi
        fw_cargo build --release --target "$FW_TARGET" "${FW_FEATURES[@]}" >&2
    )
    local rc=0
    timeout "${TINYPOET_QEMU_TIMEOUT:-900}" "${QEMU_CMD[@]}" "$(fw_elf "$FW_TARGET")" >"$fw" || rc=$?
    python3 - "$fw" "$text" <<'PY'
import sys
log = open(sys.argv[1], "rb").read()
begin, end = b"----- poem -----\n", b"----- end -----"
i, j = log.find(begin), log.find(end)
open(sys.argv[2], "wb").write(log[i + len(begin):j] if 0 <= i < j else b"")
PY
    local host_chars fw_chars
    host_chars=$(python3 -c 'import sys; print(len(open(sys.argv[1], encoding="utf-8").read()) - len(sys.argv[2]) - 1)' "$host" "$PROMPT")
    fw_chars=$(python3 -c 'import sys; print(len(open(sys.argv[1], encoding="utf-8", errors="replace").read()) - len(sys.argv[2]) - 1)' "$text" "$PROMPT")
    if [ "$rc" != 0 ]; then
        echo "FAIL $name: QEMU exited with status $rc"; tail -5 "$fw"; failed=$((failed + 1)); return
    fi
    if ! cmp -s "$host" "$text"; then
        echo "FAIL $name: firmware text differs from the host's"
        echo "  host    ($host_chars chars): $(head -c 300 "$host")"
        echo "  firmware ($fw_chars chars): $(head -c 300 "$text")"
        failed=$((failed + 1)); return
    fi
    if [ "$host_chars" -lt "$min" ]; then
        echo "FAIL $name: only $host_chars generated characters (need >= $min)"
        failed=$((failed + 1)); return
    fi
    echo "ok   $name: firmware == host, $fw_chars generated characters (seed $seed)"
    sed 's/^/       /' "$text"
    grep -E "^[0-9]+ characters|^prefill of the prompt" "$fw" | sed 's/^/       /' || true
    stack_within_limit "$name" "$fw" || { failed=$((failed + 1)); return; }
    passed=$((passed + 1))
}

console_case console
rtt_case rtt-console
run_case oneshot 2024 256 0 1
run_case verse 11 256 0 30 "七絕 acrostic=春夜喜雨 rhyme" --form 七絕 --acrostic 春夜喜雨 --rhyme

INT8_BLOB=${TINYPOET_INT8_BLOB:-$REPO_DIR/models/tinypoet-tang-int8.tpb}
if [ "$INT8_BLOB" = none ]; then
    fw_log "int8 session skipped (TINYPOET_INT8_BLOB=none)"
elif [ ! -f "$INT8_BLOB" ]; then
    echo "FAIL int8: blob $INT8_BLOB not found (TINYPOET_INT8_BLOB=none skips the int8 session)"
    failed=$((failed + 1))
else
    BLOB=$(cd "$(dirname "$INT8_BLOB")" && pwd)/$(basename "$INT8_BLOB")
    fw_log "int8 blob: $BLOB"
    console_case int8-console
    # ARMv6-M: the same int8 blob, int8 KV cache on both sides (board-mps2-an385 implies
    # kv-int8): the console, then the oneshot build
    CONSOLE_TARGET=thumbv6m-none-eabi
    CONSOLE_FEATURES=(--no-default-features --features board-mps2-an385)
    CONSOLE_QEMU=("${FW_QEMU_CONSOLE_M0[@]}")
    console_case m0-int8-console --kv int8
    FW_TARGET=thumbv6m-none-eabi
    FW_FEATURES=(--no-default-features --features board-mps2-an385,oneshot)
    HOST_KV=(--kv int8)
    QEMU_CMD=("${FW_QEMU_M0[@]}")
    run_case m0-int8-default 2024 256 0 1
    run_case m0-int8-long 7 200 1 50
fi

echo "test-qemu: $passed passed, $failed failed"
[ "$failed" = 0 ]
