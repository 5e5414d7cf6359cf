#!/usr/bin/env bash
# ab.sh ROUNDS OLD NEW ARGS... : alternate two builds of `tinypoet` (e.g. a copy of an older
# target/release/tinypoet and the current one) on `ARGS` ROUNDS times; each prints a line
# with "NN.NN ms"; report the median and min of the first "ms" number for each, and the ratio.
r=$1; a=$2; b=$3; shift 3
for i in $(seq $r); do
  x=$($a "$@" | grep -oE '[0-9]+\.[0-9]+ ms' | head -1 | cut -d' ' -f1); echo "A $x"
  y=$($b "$@" | grep -oE '[0-9]+\.[0-9]+ ms' | head -1 | cut -d' ' -f1); echo "B $y"
done | python3 -c '
import sys,statistics as s
d={"A":[],"B":[]}
for l in sys.stdin:
  k,v=l.split(); d[k].append(float(v))
for k in "AB": print(k, "median %.2f min %.2f" % (s.median(d[k]), min(d[k])), d[k])
print("B/A median %.3f  min %.3f" % (s.median(d["B"])/s.median(d["A"]), min(d["B"])/min(d["A"])))
'
