#!/usr/bin/env bash
# Two builds of miniseq, interleaved A B A B: tokens/s of `bench run-step` (one child process per run) for each N and
# mode, medians over rounds, and B/A. Used to check that a refactor costs no speed (issue: "tokens/s within 3 %").
# Usage: bench/ab_step.sh A.dll B.dll [rounds] [seq-lens] [modes] [steps]
#   e.g. bench/ab_step.sh /tmp/base/miniseq.dll artifacts/bin/MiniSeq.Cli/release/miniseq.dll 3 4096,8192 vanilla,mst+checkpoint 3
set -euo pipefail
a=$1 b=$2 rounds=${3:-3} lens=${4:-4096,8192} modes=${5:-vanilla,mst+checkpoint} steps=${6:-3}
tmp=$(mktemp)
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); MINISEQ_FORCE_ISA=${MINISEQ_FORCE_ISA:-unset}; DOTNET_EnableAVX512=${DOTNET_EnableAVX512:-unset}; rounds $rounds, $steps steps per run (the first is warm-up)"
for r in $(seq "$rounds"); do
    for n in ${lens//,/ }; do
        for m in ${modes//,/ }; do
            for side in A B; do
                dll=$a; [ "$side" = B ] && dll=$b
                tps=$(dotnet "$dll" bench run-step --config small --seq-len "$n" --mode "$m" --steps "$steps" | grep '^{' | tail -1 \
                    | python3 -c 'import json,sys; print(json.load(sys.stdin)["TokensPerSecond"])')
                echo "$r $n $m $side $tps" | tee -a "$tmp" >&2
            done
        done
    done
done
python3 - "$tmp" <<'PY'
import sys, statistics, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    r, n, m, side, tps = line.split()
    runs[(int(n), m, side)].append(float(tps))
print("| N | mode | A tokens/s (median) | B tokens/s (median) | B / A |")
print("|---:|---|---:|---:|---:|")
for (n, m) in sorted({(k[0], k[1]) for k in runs}):
    a, b = statistics.median(runs[(n, m, "A")]), statistics.median(runs[(n, m, "B")])
    print(f"| {n} | {m} | {a:.0f} | {b:.0f} | {b / a:.3f} |")
PY
rm -f "$tmp"
