#!/usr/bin/env bash
# The CPU benchmark of ssmc against its peers, on the same inputs, in the same run.
#   bench/run.sh            # all cases (installs JAX and numpy into bench/.venv once)
# Prints a table of times and ratios; logs go to bench/out/. See bench/NOTES.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
cd "$root"
cargo build --release --quiet --bin ssmc
ssmc="$root/target/release/ssmc"
out="$root/bench/out"
mkdir -p "$out"
venv="$root/bench/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import jax, safetensors" 2>/dev/null; then
  echo "bench: installing jax[cpu], numpy, safetensors into bench/.venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "jax[cpu]" numpy safetensors
fi
py="$venv/bin/python"
runs=${RUNS:-10}

json_field() { "$py" -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }

row() { printf '%-52s %12s %12s %10s\n' "$@"; }
table=()

# Mamba-1, b1 d1536 n16 L2048, fp32: ssmc native CPU vs JAX lax.scan.
m1="$out/mamba1"
"$ssmc" run stdlib/mamba1.ssm --dim B=1 --dim D=1536 --dim L=2048 --seed 1 --save-inputs "$m1.in.safetensors" --output "$m1.ref.safetensors" --form recurrent >/dev/null
ssmc_m1=$("$ssmc" run stdlib/mamba1.ssm --target cpu --inputs "$m1.in.safetensors" --output "$m1.cpu.safetensors" --bench "$runs" --json)
echo "$ssmc_m1" > "$m1.ssmc.json"
peer_m1=$("$py" bench/peers_cpu.py mamba1 "$m1.in.safetensors" "$m1.cpu.safetensors" "$runs")
echo "$peer_m1" > "$m1.peer.json"
a=$(echo "$ssmc_m1" | json_field median_ms); b=$(echo "$peer_m1" | json_field median_ms)
table+=("$(row "Mamba-1 b1 d1536 n16 L2048 fp32" "$a ms" "$b ms" "$(python3 -c "print(f'{$b/$a:.1f}x')")")")

# Mamba-2, b1 L2048 h24 p64 n128, fp32: ssmc native CPU vs the JAX chunked SSD.
m2="$out/mamba2"
"$ssmc" run stdlib/mamba2.ssm --dim B=1 --dim L=2048 --dim H=24 --dim P=64 --seed 1 --save-inputs "$m2.in.safetensors" --form recurrent --target cpu --output "$m2.cpu.safetensors" >/dev/null
ssmc_m2=$("$ssmc" run stdlib/mamba2.ssm --target cpu --inputs "$m2.in.safetensors" --output "$m2.cpu.safetensors" --bench "$runs" --json)
echo "$ssmc_m2" > "$m2.ssmc.json"
peer_m2=$("$py" bench/peers_cpu.py mamba2 "$m2.in.safetensors" "$m2.cpu.safetensors" "$runs")
echo "$peer_m2" > "$m2.peer.json"
a=$(echo "$ssmc_m2" | json_field median_ms); b=$(echo "$peer_m2" | json_field median_ms)
form_m2=$(echo "$ssmc_m2" | json_field form)
table+=("$(row "Mamba-2 b1 L2048 h24 p64 n128 fp32 ($form_m2)" "$a ms" "$b ms" "$(python3 -c "print(f'{$b/$a:.1f}x')")")")
# The same with the recurrent form, against the same peer run.
rec_m2=$("$ssmc" run stdlib/mamba2.ssm --target cpu --form recurrent --inputs "$m2.in.safetensors" --bench "$runs" --json)
echo "$rec_m2" > "$m2.recurrent.json"
a=$(echo "$rec_m2" | json_field median_ms)
table+=("$(row "Mamba-2, same, recurrent form" "$a ms" "$b ms" "$(python3 -c "print(f'{$b/$a:.1f}x')")")")

# S4D at L = 65536: the native conv form (K by its Vandermonde sum, the convolution by FFT
# in ssmc-runtime) against the native recurrent form, on the same inputs.
s4="$out/s4d"
"$ssmc" run stdlib/s4d.ssm --dim B=1 --dim H=16 --dim L=65536 --seed 1 --save-inputs "$s4.in.safetensors" --target cpu --output "$s4.rec.safetensors" >/dev/null
conv=$("$ssmc" run stdlib/s4d.ssm --target cpu --form conv --inputs "$s4.in.safetensors" --output "$s4.conv.safetensors" --bench "$runs" --json)
rec=$("$ssmc" run stdlib/s4d.ssm --target cpu --form recurrent --inputs "$s4.in.safetensors" --output "$s4.rec.safetensors" --bench "$runs" --json)
echo "$conv" > "$s4.conv.json"; echo "$rec" > "$s4.rec.json"
a=$(echo "$conv" | json_field median_ms); b=$(echo "$rec" | json_field median_ms)
table+=("$(row "S4D b1 h16 L65536: native conv vs native recurrent" "$a ms" "$b ms" "$(python3 -c "print(f'{$b/$a:.1f}x')")")")

# Peak memory of a native run at the Mamba-1 shape, against its inputs and outputs (f32).
/usr/bin/time -v "$ssmc" run stdlib/mamba1.ssm --target cpu --inputs "$m1.in.safetensors" > /dev/null 2> "$m1.time.txt" || true
rss_kb=$(grep "Maximum resident set size" "$m1.time.txt" | awk '{print $NF}')
# The inputs are saved in their declared dtype (f32) and the output written as f32.
io_bytes=$(( $(stat -c %s "$m1.in.safetensors") + $(stat -c %s "$m1.cpu.safetensors") ))
io_mb=$(python3 -c "print(round($io_bytes / 2**20, 1))")

echo
row "case" "ssmc" "peer" "peer/ssmc"
for r in "${table[@]}"; do echo "$r"; done
echo
echo "peak RSS of 'ssmc run --target cpu' at the Mamba-1 shape: $((rss_kb / 1024)) MiB; f32 inputs + outputs (their files): $io_mb MiB"
echo "relative error of the peers against ssmc's output: mamba1 $(echo "$peer_m1" | json_field rel_err_vs_ssmc), mamba2 $(echo "$peer_m2" | json_field rel_err_vs_ssmc)"
