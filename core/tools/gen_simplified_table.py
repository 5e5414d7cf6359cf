#!/usr/bin/env python3
"""Generate core/src/simplified.rs: OpenCC's per-character simplified -> traditional table
(STCharacters.txt, Apache-2.0), restricted to a model's vocabulary.

    python3 core/tools/gen_simplified_table.py [--st STCharacters.txt] [--blob BLOB] [--check]

--st defaults to the copy in the pinned ferrous-opencc crate's source, a dev-dependency of the
trainer kept for this (found with `cargo metadata`, so the workspace's dependencies must have
been fetched: `cargo fetch`); a copy of OpenCC's data/dictionary/STCharacters.txt of the same
release can be passed instead (the sha256 in the output tells which one was used); --blob defaults to
models/tinypoet-tang.tpb. --check compares instead of writing (exit 1 when they differ).

Rule per STCharacters.txt line `s<TAB>t1 t2 ...`: the first candidate t_i that is in the
vocabulary (OpenCC's default is t1, and t1 is it for all but a handful), and no entry when that
is `s` itself or no candidate is in the vocabulary.
"""
import argparse
import hashlib
import json
import os
import struct
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "core", "src", "simplified.rs")
PER_LINE = 8


def vocab_of(blob_path):
    """The vocabulary of a tinypoet v1 blob: the header's postcard Config (6 varints + 2 f32),
    then the vocabulary byte string (varint length, then u32 LE code points)."""
    b = open(blob_path, "rb").read()
    if b[:8] != b"TINYPOET":
        sys.exit(f"{blob_path}: not a tinypoet blob")
    pos = 32

    def varint():
        nonlocal pos
        v, shift = 0, 0
        while True:
            x = b[pos]
            pos += 1
            v |= (x & 0x7F) << shift
            shift += 7
            if x < 0x80:
                return v

    vocab_size = varint()
    for _ in range(5):
        varint()
    pos += 8
    n = varint()
    if n != 4 * vocab_size:
        sys.exit(f"{blob_path}: vocabulary of {n} bytes for {vocab_size} entries")
    cps = struct.unpack(f"<{vocab_size}I", b[pos : pos + n])
    return {chr(c) for c in cps}


def default_st():
    meta = json.loads(
        subprocess.check_output(
            ["cargo", "metadata", "--format-version", "1", "--manifest-path",
             os.path.join(ROOT, "Cargo.toml")],
            cwd=ROOT,
        )
    )
    for p in meta["packages"]:
        if p["name"] == "ferrous-opencc":
            d = os.path.dirname(p["manifest_path"])
            return os.path.join(d, "assets", "dictionaries", "STCharacters.txt"), p["version"]
    sys.exit("ferrous-opencc is not in the workspace's dependencies; pass --st")


def table(st_path, vocab):
    out = {}
    for line in open(st_path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        key, values = line.split("\t")
        if len(key) != 1:
            continue
        t = next((v for v in values.split(" ") if v in vocab), None)
        if t is not None and t != key:
            out[key] = t
    return sorted(out.items(), key=lambda kv: ord(kv[0]))


def render(pairs, source, st_sha, blob_name, in_vocab):
    lines = []
    for i in range(0, len(pairs), PER_LINE):
        row = ", ".join(f"('{s}', '{t}')" for s, t in pairs[i : i + PER_LINE])
        lines.append(f"    {row},")
    body = "\n".join(lines)
    n = len(pairs)
    return f"""\
//! Simplified -> traditional Chinese, one character at a time, for prompts typed in simplified
//! Chinese: the one conversion of every platform (the CLI, the web page, the firmware console),
//! so the same typed title writes the same poem everywhere.
//!
//! **Generated** by `core/tools/gen_simplified_table.py` (do not edit) from OpenCC's
//! `STCharacters.txt` ({source}; sha256 `{st_sha[:16]}…`;
//! OpenCC's dictionaries are Apache-2.0, see models/ATTRIBUTION.md), restricted to the
//! vocabulary of `{blob_name}`. An entry `(s, t)` maps a character `s` to the first of
//! OpenCC's candidates that is in the vocabulary, when that differs from `s`. {n} entries,
//! {in_vocab} of them for characters that are themselves in the vocabulary (云 → 雲, 后 → 後:
//! OpenCC's default reading), 8 bytes each ({n * 8} bytes of read-only data).
//!
//! What is lost against OpenCC's full converter: it first matches phrases (`STPhrases.txt`),
//! so it keeps 皇后 and writes 頭髮 (hair), where this table gives 皇後 and 頭發, the first
//! candidate of each character. For a poem's title that is rarely wrong; callers report what
//! they converted so a reader can see it (and the CLI's `--no-convert` keeps text as typed).

/// `(simplified, traditional)`, sorted by the simplified character's code point.
#[rustfmt::skip]
pub const TABLE: &[(char, char)] = &[
{body}
];

/// The traditional character for `c` when the table has one (`None`: `c` is not a simplified
/// character with a different traditional form in the vocabulary, so it stays as it is).
pub fn to_traditional(c: char) -> Option<char> {{
    TABLE
        .binary_search_by(|&(s, _)| s.cmp(&c))
        .ok()
        .map(|i| TABLE[i].1)
}}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--st")
    ap.add_argument("--blob", default=os.path.join(ROOT, "models", "tinypoet-tang.tpb"))
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    if a.st:
        st, source = a.st, os.path.basename(a.st)
    else:
        st, version = default_st()
        source = f"as shipped in ferrous-opencc {version}"
    vocab = vocab_of(a.blob)
    pairs = table(st, vocab)
    st_sha = hashlib.sha256(open(st, "rb").read()).hexdigest()
    in_vocab = sum(1 for s, _ in pairs if s in vocab)
    text = render(pairs, source, st_sha, os.path.relpath(a.blob, ROOT), in_vocab)
    if a.check:
        cur = open(OUT, encoding="utf-8").read() if os.path.exists(OUT) else ""
        if cur != text:
            sys.exit(f"{os.path.relpath(OUT, ROOT)} is out of date: run {os.path.relpath(__file__, ROOT)}")
        print(f"{os.path.relpath(OUT, ROOT)} is up to date ({len(pairs)} entries)")
        return
    tmp = OUT + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, OUT)
    print(f"wrote {os.path.relpath(OUT, ROOT)}: {len(pairs)} entries", file=sys.stderr)


if __name__ == "__main__":
    main()
