#!/usr/bin/env bash
# Build time of every stdlib layer at large states, in every native form and for PTX.
#   bench/build_times.sh [N ...]      # default: 16 256 300 1616 4096 16384
# Prints one line per (layer, N, form) with the wall time of `ssmc build`; FAIL after the
# time marks a build over 2 s (the goal: every layer `ssmc check` accepts builds in under
# 2 s). Exits 1 if any build failed or took over 2 s. See bench/NOTES.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
cd "$root"
cargo build --release --quiet --bin ssmc
ssmc="$root/target/release/ssmc"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(16 256 300 1616 4096 16384)
status=0
for n in "${sizes[@]}"; do
  for layer in mamba1 mamba2 s4d vim; do
    sed -E "s/state N = [0-9]+/state N = $n/" "stdlib/$layer.ssm" >"$work/$layer.ssm"
    forms=(recurrent)
    [ "$layer" = mamba2 ] && forms+=(chunked)
    [ "$layer" = s4d ] && forms+=(conv)
    for form in "${forms[@]}" ptx; do
      if [ "$form" = ptx ]; then args=(--target ptx); else args=(--target cpu --form "$form"); fi
      start=$(date +%s%N)
      if "$ssmc" build "$work/$layer.ssm" -o "$work/out" "${args[@]}" >/dev/null 2>"$work/err"; then
        ms=$(( ($(date +%s%N) - start) / 1000000 ))
        verdict=""
        if [ "$ms" -gt 2000 ]; then verdict=FAIL; status=1; fi
        printf '%-7s N=%-6s %-10s %6d ms %s\n' "$layer" "$n" "$form" "$ms" "$verdict"
      else
        printf '%-7s N=%-6s %-10s failed: %s\n' "$layer" "$n" "$form" "$(head -1 "$work/err")"
        status=1
      fi
    done
  done
done
exit $status
