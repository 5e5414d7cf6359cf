#!/usr/bin/env bash
# before_after.sh REV [ROUNDS]: the speed of git revision REV ("old") against the current tree
# ("new") on the decode benchmark and the training-step benchmark.
#
# Builds REV in a temporary worktree with its own target dir (both under $BA_WORK, default
# /tmp/tinypoet-before-after; kept between runs so a second run only rebuilds what changed), builds
# the current tree (its usual target dir), then runs the two release binaries alternately, ROUNDS
# times (default 5; the order flips every round), each from its own tree (its bundled model). Prints per benchmark the median of each binary and new/old. Wall times move
# with the machine's load; the instruction counts at the end do not: `perf stat` where the kernel
# allows it, else callgrind on short single-thread runs (valgrind has no AVX-512, so those count
# the AVX2 paths).
#
# The benchmark commands are variables (arguments to `tinypoet`), so a renamed entry point only
# needs e.g. DECODE="bench decode --runs 5 --json":
#   DECODE        decode benchmark, timed as a whole; its `"median_chars_per_s"` (older builds:
#                 `"chars_per_s"`) per `"backend"` (JSON lines) are reported too      (default: bench decode --runs 5 --json)
#   DECODE_SHORT  the decode run counted with callgrind   (default: bench decode --runs 1 --chars 50)
#   TRAIN         train-step benchmark, JSON; `--threads T` is appended for each T in THREADS
#                 (default: bench train --json --steps 5 --warmup 1; real model, batch 16x256)
#   THREADS       (default: "1 2")
#   TRAIN_SHORT   the train run counted with callgrind, one thread
#                 (default: bench train --json --batch 2 --seq 64 --steps 1 --warmup 0 --threads 1)
#   COUNT         1 (default) to count instructions, 0 to skip
set -euo pipefail

rev=${1:?usage: bench/before_after.sh REV [ROUNDS]}
rounds=${2:-5}
DECODE=${DECODE:-"bench decode --runs 5 --json"}
DECODE_SHORT=${DECODE_SHORT:-"bench decode --runs 1 --chars 50"}
TRAIN=${TRAIN:-"bench train --json --steps 5 --warmup 1"}
THREADS=${THREADS:-"1 2"}
TRAIN_SHORT=${TRAIN_SHORT:-"bench train --json --batch 2 --seq 64 --steps 1 --warmup 0 --threads 1"}
COUNT=${COUNT:-1}

root=$(git rev-parse --show-toplevel)
sha=$(git -C "$root" rev-parse --verify "$rev^{commit}")
work=${BA_WORK:-/tmp/tinypoet-before-after}
src="$work/src-${sha:0:12}"
mkdir -p "$work"

cleanup() { git -C "$root" worktree remove --force "$src" 2>/dev/null || true; }
trap cleanup EXIT
if [ ! -d "$src" ]; then
  git -C "$root" worktree add --detach --force "$src" "$sha" >/dev/null
fi

echo "== building old ($rev = ${sha:0:12}) in $src, target $work/target-old" >&2
(cd "$src" && CARGO_TARGET_DIR="$work/target-old" nice -n 10 \
  cargo build --release -q -p tinypoet-trainer --bin tinypoet)
echo "== building new (current tree $root)" >&2
(cd "$root" && nice -n 10 cargo build --release -q -p tinypoet-trainer --bin tinypoet)
new_target=$(cd "$root" && cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
cp "$work/target-old/release/tinypoet" "$work/tinypoet-old"
cp "$new_target/release/tinypoet" "$work/tinypoet-new"
old="$work/tinypoet-old"
new="$work/tinypoet-new"
log="$work/results.txt"
: >"$log"

# Each binary runs from its own tree, so it reads the bundled model in the blob format it knows
# (the format gained sections over time; decoding speed does not depend on the weights' values).
tree_of() { if [ "$1" = old ]; then echo "$src"; else echo "$root"; fi; }

# One measurement: KEY BINARY ARGS...; appends "KEY which metric value" lines to the log.
measure() {
  local key=$1 which=$2 bin=$3
  shift 3
  local t0 t1 out
  t0=$(date +%s.%N)
  out=$(cd "$(tree_of "$which")" && "$bin" "$@")
  t1=$(date +%s.%N)
  python3 - "$key" "$which" "$t0" "$t1" "$out" >>"$log" <<'EOF'
import json, sys
key, which, t0, t1, out = sys.argv[1:]
print(key, which, "wall_s", float(t1) - float(t0))
for line in out.splitlines():
    line = line.strip()
    if not line.startswith("{"):
        continue
    try:
        o = json.loads(line)
    except ValueError:
        continue
    # `median_chars_per_s` since the two decode benchmarks became one; `chars_per_s` before.
    cps = o.get("median_chars_per_s", o.get("chars_per_s"))
    if cps is not None:
        print(key, which, "chars_per_s[%s]" % o.get("backend", "?"), cps)
    for m in ("median_ms", "cpu_ms_per_step"):
        if m in o:
            print(key, which, m, o[m])
EOF
}

for i in $(seq "$rounds"); do
  if [ $((i % 2)) -eq 1 ]; then order="old new"; else order="new old"; fi
  for which in $order; do
    bin=$old
    [ "$which" = new ] && bin=$new
    # shellcheck disable=SC2086
    measure decode "$which" "$bin" $DECODE
    for t in $THREADS; do
      # shellcheck disable=SC2086
      measure "train-${t}t" "$which" "$bin" $TRAIN --threads "$t"
    done
  done
  echo "   round $i/$rounds done" >&2
done

count_instructions() { # WHICH BINARY ARGS... -> instruction count on stdout (or nothing)
  local dir bin=$2
  dir=$(tree_of "$1")
  shift 2
  if perf stat -x, -e instructions:u true 2>&1 | grep -qE '^[0-9]+,'; then
    (cd "$dir" && perf stat -x, -e instructions:u "$bin" "$@" 2>&1 >/dev/null) \
      | grep -E '^[0-9]+,' | tail -1 | cut -d, -f1
  elif command -v valgrind >/dev/null; then
    (cd "$dir" && valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$@" 2>&1 >/dev/null) \
      | sed -n 's/.*Collected : *\([0-9]*\).*/\1/p' | tail -1
  fi
}

if [ "$COUNT" = 1 ]; then
  echo "== counting instructions (single thread, short runs)" >&2
  for which in old new; do
    bin=$old
    [ "$which" = new ] && bin=$new
    # shellcheck disable=SC2086
    n=$(count_instructions "$which" "$bin" $DECODE_SHORT || true)
    [ -n "$n" ] && echo "decode-short $which instructions $n" >>"$log"
    # shellcheck disable=SC2086
    n=$(count_instructions "$which" "$bin" $TRAIN_SHORT || true)
    [ -n "$n" ] && echo "train-short $which instructions $n" >>"$log"
  done
fi

echo "old: $rev (${sha:0:12})   new: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo '+dirty')   rounds: $rounds   load: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$log" <<'EOF'
import statistics as st, sys
d = {}
for line in open(sys.argv[1]):
    key, which, metric, value = line.split()
    d.setdefault((key, metric), {}).setdefault(which, []).append(float(value))
print("%-14s %-26s %14s %14s %9s" % ("benchmark", "metric", "old median", "new median", "new/old"))
for (key, metric), v in d.items():
    if "old" not in v or "new" not in v:
        continue
    a, b = st.median(v["old"]), st.median(v["new"])
    print("%-14s %-26s %14.6g %14.6g %9.3f" % (key, metric, a, b, b / a if a else float("nan")))
EOF
echo "(raw values: $log; lower is better except chars_per_s)"
