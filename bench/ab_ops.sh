#!/usr/bin/env bash
# ab_ops.sh ROUNDS OLD NEW [bench train args] : per-op times normalised by the same run's head+CE
# time (both suffer the machine's phase alike), alternating the two binaries. Both need the per-op
# timer: build them with `cargo build --release --features op-times` (revisions before the feature
# existed have it always).
r=$1; a=$2; b=$3; shift 3
for i in $(seq $r); do
  for k in A B; do
    bin=$a; [ $k = B ] && bin=$b
    $bin bench train --ops "$@" | sed -n '/wall time per operation/,$p' | tail -n +2 | sed "s/^/$k|/"
  done
done | python3 -c '
import sys,re,statistics as st
d={}
runs={"A":[], "B":[]}
cur=None
for l in sys.stdin:
  k,rest=l.split("|",1)
  m=re.match(r"\s*(.+?)\s+([\d.]+)\s+[\d.]+%",rest)
  if not m: continue
  name,v=m.group(1),float(m.group(2))
  if name=="embedding" : runs[k].append({})
  runs[k][-1][name]=v
for name in runs["A"][0]:
  ra=[x[name]/x["head+CE fwd+bwd"] for x in runs["A"]]; rb=[x[name]/x["head+CE fwd+bwd"] for x in runs["B"]]
  ma,mb=st.median(ra),st.median(rb)
  print("%-22s A %.4f  B %.4f  B/A %.3f" % (name, ma, mb, mb/ma if ma else 0))
'
