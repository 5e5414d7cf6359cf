#!/usr/bin/env bash
# Runs every test of tinypoet: host tests (all workspace crates), the no_std build of the core for a
# Cortex-M4, the real-board firmware builds, the firmware under QEMU checked against the host, and
# the browser page in headless Chromium checked against the host.
#
# It installs what is missing (Debian/Ubuntu packages via apt-get, as root or with sudo; npm for the
# corpus package; the thumbv7em-none-eabihf target via rustup, else Debian's toolchain).
#
# Usage: bash scripts/test-all.sh          (from anywhere inside the repository)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_install() {
    # Install Debian packages that are missing; a no-op when all are present.
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        if ! command -v apt-get >/dev/null 2>&1; then
            echo "error: need ${missing[*]} but apt-get is not available; install them by hand" >&2
            exit 1
        fi
        step "installing ${missing[*]}"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

step "system packages"
command -v npm >/dev/null 2>&1 || apt_install npm
command -v qemu-system-arm >/dev/null 2>&1 || apt_install qemu-system-arm
# The firmware scripts read ELF files and compare texts with small Python helpers.
command -v python3 >/dev/null 2>&1 || apt_install python3

step "corpus package (chinese-poetry@2.0.1, for the real-corpus tests)"
TINYPOET_CORPUS_TGZ=$(bash scripts/fetch-corpus.sh)
export TINYPOET_CORPUS_TGZ

step "formatting and lints"
cargo fmt --all -- --check
(cd firmware-example && cargo fmt -- --check) # its own workspace
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The API docs build without a warning (broken or redundant intra-doc links included).
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
# The Cortex-M assembly in core/src/kernels/cortex_m.rs is generated; it must match its generator.
python3 core/tools/gen_cortex_m_asm.py --check
# So is the simplified -> traditional table (from the OpenCC dictionary in the pinned
# ferrous-opencc, a dev-dependency of the trainer).
python3 core/tools/gen_simplified_table.py --check

step "host tests (cargo test --workspace; the test profile is optimised)"
cargo test --workspace

step "no_std build of tinypoet-core for thumbv7em-none-eabihf"
bash scripts/check-nostd.sh

step "firmware: real-board builds and the QEMU run checked against the host"
if [ -f firmware-example/check-boards.sh ]; then bash firmware-example/check-boards.sh; fi
bash firmware-example/test-qemu.sh

step "the browser page in headless Chromium, checked against the host (web/test-browser.sh)"
bash web/test-browser.sh

step "all tests passed"
