#!/usr/bin/env bash
# Build tinypoet-core for thumbv7em-none-eabihf with only `core` available (no std, no alloc).
# Fast path: a rustup-installed target. Fallback: Debian 12's rustc-web + rust-web-src with
# build-std=core (see the project's embedded notes, section 4).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=thumbv7em-none-eabihf
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

if command -v rustup >/dev/null 2>&1 && rustup target add "$TARGET" >/dev/null 2>&1; then
    echo "check-nostd: rustup target $TARGET"
    cargo build -p tinypoet-core --target "$TARGET" --release
else
    echo "check-nostd: rustup target unavailable, using Debian rustc-web + build-std=core"
    if ! [ -x /usr/bin/rustc ] || ! [ -d /usr/lib/rustlib/src/rust/library ]; then
        apt-get update
        apt-get install -y --no-install-recommends rustc-web cargo-web lld
        (cd /tmp && apt-get download rust-web-src && dpkg-deb -x rust-web-src_*.deb /)
    fi
    PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
        cargo build -p tinypoet-core --target "$TARGET" --release -Z build-std=core
fi
# thumbv7em-none-eabihf has no std or alloc, so a successful build proves the crate needs neither.
RLIB=$(ls -t "$CARGO_TARGET_DIR/$TARGET/release/deps/"libtinypoet_core-*.rlib | head -1)
echo "check-nostd: OK ($RLIB)"
