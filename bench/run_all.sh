#!/usr/bin/env bash
# Regenerates the committed benchmark reports under docs/benchmarks/ (never run by CI; about an hour on 2 cores, on an
# otherwise idle machine). Parts: gemm attention step overhead pytorch memory (default: all, in that order).
# Needs: dotnet; for the comparisons Debian's libopenblas0-pthread (GEMM yardstick) and python3-torch +
# libopenblas0-openmp (PyTorch baseline).
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/benchmarks
mkdir -p "$out"
dotnet build MiniSeq.slnx -c Release >/dev/null
# Run from a copy so that rebuilding the working tree cannot disturb a long run.
bin=$(mktemp -d)
cp -r artifacts/bin/MiniSeq.Cli/release/. "$bin"
unset OPENBLAS_CORETYPE
parts=${*:-gemm attention step overhead pytorch memory}

run() { # run FILE TITLE COMMAND...
    local file=$1 title=$2; shift 2
    local shown="$*"
    shown=${shown//dotnet $bin\/miniseq.dll/miniseq}
    { echo "# $title"; echo; echo "Command: \`$shown\` (bench/run_all.sh, $(date -u +%Y-%m-%d); \`miniseq\` = \`dotnet artifacts/bin/MiniSeq.Cli/release/miniseq.dll\`)"; echo; "$@"; } > "$file.tmp" 2>/dev/null
    mv "$file.tmp" "$file"
    echo "wrote $file"
}

for part in $parts; do
    case $part in
    gemm) run "$out/gemm-step-shapes.md" "GEMM: MiniSeq vs OpenBLAS (2 threads), shapes of a training step (N=4096, d=256, I=896, V=8192)" \
        env OPENBLAS_NUM_THREADS=2 dotnet "$bin/miniseq.dll" bench gemm --runs 10 ;;
    attention) run "$out/attention.md" "Flash attention forward and backward (H=8, KvH=2, D=32, B=1)" \
        dotnet "$bin/miniseq.dll" bench attention --seq-len 4096,8192,16384 --runs 3 ;;
    step) run "$out/step.md" "Training step: tokens/s, memory and time per op family (small config, batch 1, fp32 AdamW, one process per run)" \
        dotnet "$bin/miniseq.dll" bench step --seq-len 1024,2048,4096,8192,16384 --modes vanilla,mst,checkpoint,mst+checkpoint --steps 3 ;;
    overhead) run "$out/overhead.md" "Cost of each memory policy in tokens/s, interleaved step by step in one process" \
        dotnet "$bin/miniseq.dll" bench overhead --seq-len 4096,8192,16384 --modes vanilla,mst,checkpoint,mst+checkpoint --rounds 4 ;;
    pytorch) run "$out/pytorch.md" "MiniSeq vs PyTorch 1.13 (CPU, OpenBLAS, 2 threads): same model, same mode, same N, batch 1, fp32 AdamW" \
        python3 bench/compare_torch.py --seq-len 4096,8192,16384 --modes vanilla,mst+checkpoint --steps 3 ;;
    memory) dotnet "$bin/miniseq.dll" bench memory --seq-len 1024,2048,4096,8192,16384,32768,65536 \
        --modes vanilla,checkpoint,mst,mst+checkpoint,auto --steps 2 --budget 1GiB --skip-above 3GiB --out "$out/memory" --overwrite > "$out/memory.log" 2>&1
        echo "wrote $out/memory.md, $out/memory.svg" ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
    esac
done
