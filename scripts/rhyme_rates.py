#!/usr/bin/env python3
"""Measure a rhyme table on the Tang corpus (issue 15, item 3).

    python3 scripts/rhyme_rates.py models/rhyme-pingshui.tsv /work/data/chinese-poetry-2.0.1.tgz

Poems: the reference's 47,457 (poet.tang.0..56000.json, its four filter rules). A regulated
quatrain (絕句) is a poem of 2 paragraphs `XXXXX，XXXXX。` (5 or 7 Han characters per verse
line, each mark one of ，？ / 。？). Its even-line endings are the last characters of verse lines
2 and 4; the table calls them rhyming if the two characters share a group (any reading of a
polyphone counts). The control: 100,000 pairs of even-line endings from two different
quatrains (seeded). Also printed: the same with one reading per character (the first group
listed), to show what the polyphones add to both rates, and 律詩 (4 paragraphs: all four
even-line endings share one group).
"""
import json
import random
import sys
import tarfile


def load_table(path):
    groups, of = {}, {}
    for line in open(path, encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        f = line.rstrip("\n").split("\t")
        if f[0] == "G":
            groups[int(f[1])] = (f[2], f[3])
        elif f[0] == "C":
            of[f[1]] = [int(g) for g in f[2].split(",")]
    return groups, of


def tang_poems(tgz):
    want = {"package/dist/quantangshi/poet.tang.%d.json" % (n * 1000) for n in range(57)}
    poems = {}
    with tarfile.open(tgz) as t:
        for m in t:
            if m.name in want:
                poems[m.name] = json.load(t.extractfile(m))
    out = []
    for n in range(57):
        out += poems["package/dist/quantangshi/poet.tang.%d.json" % (n * 1000)]
    return [p for p in out if keep(p)]


def keep(p):
    texts = [p["title"]] + p["paragraphs"]
    if any("□" in x for x in texts):
        return False
    if len({len(x) for x in p["paragraphs"]}) > 1 or len(p["paragraphs"]) < 2:
        return False
    return not any("(" in x or "（" in x for x in texts)


def is_han(c):
    v = ord(c)
    return 0x3400 <= v <= 0x4DBF or 0x4E00 <= v <= 0x9FFF or 0xF900 <= v <= 0xFAFF or 0x20000 <= v <= 0x3FFFF


def even_endings(p, couplets):
    ps = p["paragraphs"]
    if len(ps) != couplets or len(ps[0]) not in (12, 16):
        return None
    w = (len(ps[0]) - 2) // 2
    for x in ps:
        if x[w] not in "，？" or x[-1] not in "。？" or not all(is_han(c) for c in x[:w] + x[w + 1:-1]):
            return None
    return w, [x[-2] for x in ps]


def share(of, chars, first_only):
    sets = [set(of.get(c, [])[:1] if first_only else of.get(c, [])) for c in chars]
    return bool(set.intersection(*sets))


def main():
    groups, of = load_table(sys.argv[1])
    poems = tang_poems(sys.argv[2])
    print("table: %d groups, %d characters (%d with several groups)" % (
        len(groups), len(of), sum(len(g) > 1 for g in of.values())))
    print("poems: %d" % len(poems))
    rng = random.Random(2024)
    for couplets, kind in ((2, "絕句"), (4, "律詩")):
        by_w = {5: [], 7: []}
        for p in poems:
            e = even_endings(p, couplets)
            if e:
                by_w[e[0]].append(e[1])
        for first_only in (False, True):
            label = "one reading" if first_only else "any reading"
            tot_r = tot_n = 0
            for w in (5, 7):
                ends = by_w[w]
                r = sum(share(of, e, first_only) for e in ends)
                tot_r += r
                tot_n += len(ends)
                print("%s %d-char, %s: %d poems, even-line endings rhyme in %.1f%%" % (
                    kind, w, label, len(ends), 100.0 * r / len(ends)))
            allq = by_w[5] + by_w[7]
            n, hit = 100_000, 0
            for _ in range(n):
                i, j = rng.sample(range(len(allq)), 2)
                hit += share(of, [rng.choice(allq[i]), rng.choice(allq[j])], first_only)
            print("%s 5+7, %s: %d poems, rhyme %.1f%%; endings of two different poems: %.1f%%" % (
                kind, label, tot_n, 100.0 * tot_r / tot_n, 100.0 * hit / n))
        missing = sum(c not in of for e in by_w[5] + by_w[7] for c in e)
        total = sum(len(e) for e in by_w[5] + by_w[7])
        print("%s even-line endings not in the table: %d of %d (%.1f%%)" % (kind, missing, total, 100.0 * missing / total))


if __name__ == "__main__":
    main()
