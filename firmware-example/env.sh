# Sourced by the firmware scripts (run-qemu.sh, check-boards.sh, test-qemu.sh,
# figures.sh): installs what is missing and defines `fw_cargo`.
#
# Toolchain routes (../../shared/spec/embedded.md §4):
#  1. rustup: `rustup target add <target>` (fast path; rust-lld is bundled).
#  2. Debian 12: rustc-web + cargo-web + lld from apt, rust-web-src extracted to /
#     (dpkg-deb -x: 3 s instead of 2.5 min of dpkg), then build-std=core with
#     RUSTC_BOOTSTRAP=1 and ld.lld as the linker.
# Override with TINYPOET_FW_ROUTE=rustup|debian.

FW_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$FW_DIR/.." && pwd)
# Firmware builds: TINYPOET_FW_TARGET_DIR, default firmware-example/target.
# Host builds (trainer, for the comparison): the caller's CARGO_TARGET_DIR, default <repo>/target,
# so the test command's own host build is reused.
FW_TARGET_DIR=${TINYPOET_FW_TARGET_DIR:-$FW_DIR/target}
HOST_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
FW_ORIG_PATH=$PATH

fw_log() { printf '[firmware] %s\n' "$*" >&2; }

_fw_sudo() { if [ "$(id -u)" -ne 0 ]; then sudo "$@"; else "$@"; fi; }

_fw_apt_updated=""
fw_apt_install() {
    local missing=() pkg
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || { fw_log "need ${missing[*]}: install them by hand"; return 1; }
    if [ -z "$_fw_apt_updated" ]; then _fw_sudo apt-get update -qq; _fw_apt_updated=1; fi
    fw_log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive _fw_sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

fw_need_qemu() {
    command -v qemu-system-arm >/dev/null 2>&1 || fw_apt_install qemu-system-arm
}

# fw_setup TARGET...: make the targets buildable; sets FW_ROUTE and FW_BUILD_STD.
FW_BUILD_STD=()
fw_setup() {
    local route=${TINYPOET_FW_ROUTE:-}
    if [ -z "$route" ]; then
        route=debian
        if command -v rustup >/dev/null 2>&1; then
            local ok=1 t
            for t in "$@"; do
                rustup target list --installed 2>/dev/null | grep -qx "$t" && continue
                fw_log "rustup target add $t"
                rustup target add "$t" >&2 || { ok=0; break; }
            done
            [ $ok = 1 ] && route=rustup
        fi
    fi
    if [ "$route" = debian ]; then
        fw_log "toolchain: Debian rustc-web + lld + rust-web-src, build-std=core"
        # Always refresh the lists: bookworm's own rustc-web (1.85) is too old for the core;
        # bookworm-security has a newer one (1.96 when this was written), and install upgrades.
        command -v apt-get >/dev/null 2>&1 || { fw_log "no apt-get: install a Rust toolchain by hand"; return 1; }
        _fw_sudo apt-get update -qq
        _fw_apt_updated=1
        DEBIAN_FRONTEND=noninteractive _fw_sudo apt-get install -y -qq --no-install-recommends \
            rustc-web cargo-web lld >&2
        # The library source must match the compiler exactly (embedded.md §4). dpkg-deb -x takes
        # seconds where installing the package takes minutes; a marker records for which rustc.
        local want marker=/usr/lib/rustlib/src/rust/.tinypoet-rustc-version
        want=$(/usr/bin/rustc --version)
        if [ ! -f /usr/lib/rustlib/src/rust/library/Cargo.lock ] || [ "$(cat "$marker" 2>/dev/null)" != "$want" ]; then
            local tmp
            tmp=$(mktemp -d)
            (cd "$tmp" && apt-get download rust-web-src >&2 && _fw_sudo dpkg-deb -x rust-web-src_*.deb /)
            rm -rf "$tmp"
            echo "$want" | _fw_sudo tee "$marker" >/dev/null
        fi
        export PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
        export CARGO_TARGET_THUMBV7EM_NONE_EABIHF_LINKER=ld.lld
        export CARGO_TARGET_THUMBV8M_MAIN_NONE_EABIHF_LINKER=ld.lld
        export CARGO_TARGET_THUMBV6M_NONE_EABI_LINKER=ld.lld
        FW_BUILD_STD=(-Zbuild-std=core)
    else
        fw_log "toolchain: rustup ($(rustc --version))"
        FW_BUILD_STD=()
    fi
    FW_ROUTE=$route
}

# fw_cargo ARGS...: cargo in the firmware directory with the route's extra flags.
fw_cargo() {
    (cd "$FW_DIR" && CARGO_TARGET_DIR=$FW_TARGET_DIR cargo "$@" "${FW_BUILD_STD[@]}")
}

# host_cargo ARGS...: cargo for the host workspace (rustup's or Debian's toolchain as found).
host_cargo() {
    # The caller's toolchain (not the Debian route's PATH/RUSTC), so the test command's own host
    # build in the same target directory is reused.
    (cd "$REPO_DIR" && env -u RUSTC_BOOTSTRAP -u RUSTC PATH="$FW_ORIG_PATH" \
        CARGO_TARGET_DIR="$HOST_TARGET_DIR" cargo "$@")
}

# fw_elf TARGET: path of the firmware ELF after fw_cargo build --release --target TARGET.
fw_elf() {
    echo "$FW_TARGET_DIR/$1/release/tinypoet-firmware"
}

# The QEMU command line (the same as .cargo/config.toml's runner).
FW_QEMU=(qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic
    -semihosting-config enable=on,target=native -icount shift=0,align=off,sleep=off -kernel)
# ARMv6-M builds (thumbv6m-none-eabi, the RP2040's code) on a Cortex-M3 mps2-an385.
FW_QEMU_M0=(qemu-system-arm -cpu cortex-m3 -machine mps2-an385 -nographic
    -semihosting-config enable=on,target=native -icount shift=0,align=off,sleep=off -kernel)

# The console under QEMU: UART0 on stdin/stdout (-serial stdio), no monitor, semihosting for the
# exit status, the same -icount as the measurements (instructions per character are exact).
FW_QEMU_CONSOLE=(qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -display none -monitor none
    -serial stdio -semihosting-config enable=on,target=native -icount shift=0,align=off,sleep=off
    -kernel)

# The ARMv6-M console (thumbv6m-none-eabi) on the Cortex-M3 mps2-an385, the same way.
FW_QEMU_CONSOLE_M0=(qemu-system-arm -cpu cortex-m3 -machine mps2-an385 -display none -monitor none
    -serial stdio -semihosting-config enable=on,target=native -icount shift=0,align=off,sleep=off
    -kernel)

# fw_blob: print the path of the blob to embed.
#   TINYPOET_BLOB if set; else the committed default model; else a blob from a
#   short seeded training run on the real corpus, cached in target/ (made once).
fw_blob() {
    if [ -n "${TINYPOET_BLOB:-}" ]; then
        echo "$TINYPOET_BLOB"
    elif [ -f "$REPO_DIR/models/tinypoet-tang.tpb" ]; then
        echo "$REPO_DIR/models/tinypoet-tang.tpb"
    else
        bash "$FW_DIR/make-test-blob.sh"
    fi
}
