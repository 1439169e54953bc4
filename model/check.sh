#!/usr/bin/env bash
# npm run model: checks model/failsafe.pml with spin (Debian package `spin`, and gcc).
#   1. safety (never two nodes serving; no grant to a node while its promise runs), exhaustively;
#   2. liveness under weak fairness (a crashed active is replaced once the arbiter is back);
#   3. each planted bug is caught, with a counterexample trail (written to model/out/).
# Exits non-zero if any of these does not hold.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out="$here/out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
command -v spin >/dev/null || { echo "spin is not installed (apt-get install spin)" >&2; exit 2; }

# verify NAME SPIN_FLAGS CC_FLAGS PAN_FLAGS: prints pan's summary, leaves its output in $work/NAME/pan.out
verify() {
  local name=$1 spin_flags=$2 cc_flags=$3 pan_flags=$4
  mkdir -p "$work/$name"
  cp "$here/failsafe.pml" "$work/$name/"
  (
    cd "$work/$name"
    # shellcheck disable=SC2086 # the flag lists are word-split on purpose
    spin $spin_flags -a failsafe.pml >spin.out
    # shellcheck disable=SC2086
    gcc -O2 -w $cc_flags -o pan pan.c
    # shellcheck disable=SC2086
    ./pan $pan_flags >pan.out 2>&1 || true
  )
}

errors() { sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$work/$1/pan.out"; }
states() { sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$work/$1/pan.out"; }
# pan prints 1.06e+03 from 1,000 s on.
seconds() { sed -n 's/^pan: elapsed time \([0-9.e+]*\) seconds.*/\1/p' "$work/$1/pan.out"; }

failed=0
started=$SECONDS

# The two exhaustive runs side by side (one core each), then the planted bugs. Each stores its
# 23 M states uncompressed, about 2.1 GB (-DCOLLAPSE needs 1.3 GB but a third more time: safety
# took 98 s with it, 75 s without, each beside the other on a core of its own).
verify safety "" "-DSAFETY -DNOCLAIM" "-m400000" &
verify liveness "" "-DNFAIR=3" "-a -f -m400000 -N replaced" &
wait
if [ "$(errors safety)" = 0 ] && ! grep -q "max search depth too small" "$work/safety/pan.out"; then
  echo "✔ safety: never two nodes serving, no grant to a node while its promise runs — $(states safety) states, $(seconds safety) s"
else
  echo "✖ safety does not hold:"; cat "$work/safety/pan.out"; failed=1
fi

if [ "$(errors liveness)" = 0 ] && ! grep -q "max search depth too small" "$work/liveness/pan.out"; then
  echo "✔ liveness (weak fairness): a crashed active is replaced once the arbiter is reachable — $(states liveness) states, $(seconds liveness) s"
else
  echo "✖ liveness does not hold:"; cat "$work/liveness/pan.out"; failed=1
fi

bugs=(BUG_FORGET_PROMISE BUG_EXTEND_PAST_PROMISE BUG_GRANT_VOUCHING BUG_RELEASE_LATER_PROMISE BUG_PROMISE_UNRECORDED)
for bug in "${bugs[@]}"; do verify "$bug" "-D$bug" "-DSAFETY -DNOCLAIM" "-m400000" & done
wait
for bug in "${bugs[@]}"; do
  if [ "$(errors "$bug")" != 0 ] && [ -f "$work/$bug/failsafe.pml.trail" ]; then
    (cd "$work/$bug" && spin "-D$bug" -t -p -g -l failsafe.pml >"$out/$bug.trail.txt" 2>&1) || true
    cp "$work/$bug/failsafe.pml.trail" "$out/$bug.trail"
    violated=$(grep -m1 "assertion violated" "$work/$bug/pan.out" | sed 's/^pan:1: //')
    echo "✔ planted $bug caught: $violated — trail in model/out/$bug.trail.txt ($(grep -c 'proc ' "$out/$bug.trail.txt") steps)"
  else
    echo "✖ planted $bug NOT caught: the model is blind to it"; cat "$work/$bug/pan.out"; failed=1
  fi
done

echo "model checked in $((SECONDS - started)) s"
exit "$failed"
