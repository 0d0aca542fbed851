#!/usr/bin/env bash
# MiniSeq vs LibTorch 2.10 (TorchSharp-cpu 0.107.0): training-step tokens/s and peak RSS, same model (--config),
# same weights, same tokens, same mode, same N, batch 1, fp32 AdamW, 2 threads. Runs alternate MiniSeq / LibTorch
# (A B A B) for every (round, N, mode), one process per run; writes docs/benchmarks/libtorch.md.
#
#   bench/libtorch.sh                      # full run: N = 2048,4096,8192,16384; vanilla, checkpoint, mst+checkpoint
#   bench/libtorch.sh --mmap               # also LibTorch with MALLOC_MMAP_THRESHOLD_=131072
#   bench/libtorch.sh --smoke              # quick pipeline check (N=512, 1 step, 1 round; output marked SMOKE TEST)
#
# Options (defaults in brackets):
#   --config NAME|FILE  the model: tiny | small | demo | a Llama config.json (as `miniseq init --config`) [small]
#   --seq-len LIST      [2048,4096,8192,16384]
#   --modes LIST        [vanilla,checkpoint,mst+checkpoint]
#   --steps S           steps per run, the first a warm-up (as `miniseq bench run-step --steps`) [4]
#   --rounds R          A B rounds [3]
#   --threads T         MINISEQ_THREADS and torch.set_num_threads [2]
#   --mmap              also run LibTorch with MALLOC_MMAP_THRESHOLD_=131072 (glibc returns big blocks to the OS at once)
#   --lt-env 'K=V …'    extra environment for every LibTorch run, e.g. 'OMP_WAIT_POLICY=passive' or
#                       'ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2' (to pair with DOTNET_EnableAVX512=0) []
#   --lm-head K         LibTorch MsT LM head: grad-in-forward (MiniSeq's default) | recompute [grad-in-forward]
#   --check-seq-len N   N of the correctness check [1024]
#   --out FILE          [docs/benchmarks/libtorch.md; with --smoke: artifacts/libtorch-smoke.md]; an existing file is
#                       refused before the run unless --overwrite (the smoke test's default file is its own)
#   --overwrite         replace an existing --out file
#   --work DIR          model, JSON lines, logs; a new or empty directory, or one this script made [artifacts/libtorch-bench]
#   --no-build          skip the two dotnet builds
#   --smoke             N=512, 1 step, 1 round unless given; the markdown says it is a smoke test
# Environment: MINISEQ_FORCE_ISA=Scalar|V128|V256|V512 is passed to MiniSeq (LibTorch picks its own ISA path);
# DOTNET_EnableAVX512=0 turns AVX-512 off in .NET's JIT: MiniSeq then runs as on an AVX2 CPU (V256, 16 registers).
#
# Never run by CI (TorchSharp is not part of MiniSeq.slnx). Timings mean something only on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=small SEQ_LENS=2048,4096,8192,16384 MODES=vanilla,checkpoint,mst+checkpoint STEPS=4 ROUNDS=3 THREADS=2 MMAP=0
LM_HEAD=grad-in-forward CHECK_N=1024 OUT= OVERWRITE=0 WORK=artifacts/libtorch-bench BUILD=1 SMOKE=0 LT_ENV=
SET_SEQ= SET_STEPS= SET_ROUNDS=
while [ $# -gt 0 ]; do
  case "$1" in
    --config) CONFIG=$2; shift 2 ;;
    --seq-len) SEQ_LENS=$2; SET_SEQ=1; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --steps) STEPS=$2; SET_STEPS=1; shift 2 ;;
    --rounds) ROUNDS=$2; SET_ROUNDS=1; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --mmap) MMAP=1; shift ;;
    --lm-head) LM_HEAD=$2; shift 2 ;;
    --lt-env) LT_ENV=$2; shift 2 ;;
    --check-seq-len) CHECK_N=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --overwrite) OVERWRITE=1; shift ;;
    --work) WORK=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --smoke) SMOKE=1; shift ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$SMOKE" = 1 ]; then
  [ -n "$SET_SEQ" ] || SEQ_LENS=512
  [ -n "$SET_STEPS" ] || STEPS=1
  [ -n "$SET_ROUNDS" ] || ROUNDS=1
  [ "$CHECK_N" != 1024 ] || CHECK_N=512
  [ -n "$OUT" ] || { OUT=artifacts/libtorch-smoke.md; OVERWRITE=1; }
fi
[ -n "$OUT" ] || OUT=docs/benchmarks/libtorch.md
if [ -e "$OUT" ] && [ "$OVERWRITE" != 1 ]; then
  echo "$OUT exists: pick another --out or add --overwrite" >&2; exit 2
fi

MS_DLL=artifacts/bin/MiniSeq.Cli/release/miniseq.dll
LT_DLL=artifacts/bin/MiniSeq.LibTorchBench/release_linux-x64/MiniSeq.LibTorchBench.dll
if [ "$BUILD" = 1 ]; then
  dotnet build src/MiniSeq.Cli/MiniSeq.Cli.csproj -c Release -v quiet -nologo
  # Not in MiniSeq.slnx: restores TorchSharp-cpu 0.107.0 (LibTorch 2.10.0 CPU) from NuGet.
  dotnet build bench/LibTorch/MiniSeq.LibTorchBench.csproj -c Release -v quiet -nologo
fi
MS=(dotnet "$MS_DLL")
# shellcheck disable=SC2206  # LT_ENV is a list of K=V words on purpose
LT=(env $LT_ENV dotnet "$LT_DLL")
LT_PREFIX=${LT_ENV:+$LT_ENV }

# --work is this script's own directory (marked): it never truncates or removes files in a directory it did not create.
if [ -d "$WORK" ] && [ -n "$(ls -A "$WORK")" ] && [ ! -e "$WORK/.libtorch-bench" ]; then
  echo "$WORK is not empty and was not created by bench/libtorch.sh: pick another --work" >&2; exit 2
fi
mkdir -p "$WORK"
: > "$WORK/.libtorch-bench"
RESULTS=$WORK/results.jsonl CMDS=$WORK/commands.txt
: > "$RESULTS"
: > "$CMDS"
log() { echo "+ $*" >&2; }
record() { echo "$*" >> "$CMDS"; log "$*"; }

# 1. LibTorchSharp on Debian 12: flag the GLIBCXX_3.4.32 need weak on the build-output copy (the program does this at
#    every start too; the NuGet cache's original is never touched).
"${LT[@]}" patch-elf
if command -v readelf > /dev/null; then readelf -V "$(dirname "$LT_DLL")/libLibTorchSharp.so" | grep GLIBCXX_3.4.32 | grep Name >&2 || true; fi

# 2. The weights both engines train: those `miniseq bench run-step` initialises (InitializeRandom(1)).
rm -rf "$WORK/model"   # inside the script's own --work directory (checked above)
record "dotnet $MS_DLL init --config $CONFIG --seed 1 --out $WORK/model"
"${MS[@]}" init --config "$CONFIG" --seed 1 --out "$WORK/model" > /dev/null
"${LT[@]}" info --threads "$THREADS" > "$WORK/info.json"

# 3. Correctness gate: refuse to time if LibTorch's loss differs from MiniSeq's by more than 1e-4 (relative).
CHECK_MODES=vanilla,checkpoint,mst+checkpoint,mst+checkpoint@$((CHECK_N / 3 + 1))   # the last: several chunks + a tail chunk
record "${LT_PREFIX}dotnet $LT_DLL check --model $WORK/model --seq-len $CHECK_N --modes $CHECK_MODES --threads $THREADS --lm-head $LM_HEAD"
"${LT[@]}" check --model "$WORK/model" --seq-len "$CHECK_N" --modes "$CHECK_MODES" --threads "$THREADS" --lm-head "$LM_HEAD" | grep -v '^{' > "$WORK/check.txt" \
  || { cat "$WORK/check.txt" >&2; echo "correctness check failed: not timing" >&2; exit 1; }
cat "$WORK/check.txt" >&2

# 4. Interleaved timing.
LT_WARMUP=1 LT_STEPS=$((STEPS - 1))
if [ "$STEPS" -le 1 ]; then LT_WARMUP=0 LT_STEPS=1; fi   # as MiniSeq: a single step is timed as it is
ORDER="MiniSeq, LibTorch"
if [ "$MMAP" = 1 ]; then ORDER="MiniSeq, LibTorch, LibTorch with MALLOC_MMAP_THRESHOLD_"; fi
record "# for each round 1..$ROUNDS, N in $SEQ_LENS, mode in $MODES, in this order: $ORDER"
record "MINISEQ_THREADS=$THREADS dotnet $MS_DLL bench run-step --config $CONFIG --seq-len N --mode MODE --steps $STEPS   # the per-run process of 'miniseq bench step'"
record "${LT_PREFIX}dotnet $LT_DLL run-one --model $WORK/model --seq-len N --mode MODE --warmup $LT_WARMUP --steps $LT_STEPS --threads $THREADS --lm-head $LM_HEAD"
if [ "$MMAP" = 1 ]; then
  record "MALLOC_MMAP_THRESHOLD_=131072 ${LT_PREFIX}dotnet $LT_DLL run-one --model $WORK/model --seq-len N --mode MODE --warmup $LT_WARMUP --steps $LT_STEPS --threads $THREADS --lm-head $LM_HEAD"
fi
last_json() { grep '^{' | tail -n 1; }
# One run: append its JSON line tagged with the engine and round; a failed run (e.g. out of memory) is logged and skipped.
run() {
  local engine=$1; shift
  local line
  line=$("$@" | last_json) || line=
  if [ -n "$line" ]; then
    echo "{\"engine\":\"$engine\",\"round\":$round,\"result\":$line}" >> "$RESULTS"
  else
    echo "FAILED: $engine round $round: $*" >&2
    echo "# FAILED: $engine round $round: $*" >> "$CMDS"
  fi
}
for round in $(seq 1 "$ROUNDS"); do
  for n in ${SEQ_LENS//,/ }; do
    for mode in ${MODES//,/ }; do
      log "round $round N=$n $mode: MiniSeq"
      run miniseq env MINISEQ_THREADS="$THREADS" "${MS[@]}" bench run-step --config "$CONFIG" --seq-len "$n" --mode "$mode" --steps "$STEPS"
      log "round $round N=$n $mode: LibTorch"
      run libtorch "${LT[@]}" run-one --model "$WORK/model" --seq-len "$n" --mode "$mode" --warmup $LT_WARMUP --steps $LT_STEPS --threads "$THREADS" --lm-head "$LM_HEAD"
      if [ "$MMAP" = 1 ]; then
        log "round $round N=$n $mode: LibTorch, MALLOC_MMAP_THRESHOLD_=131072"
        run libtorch+mmap env MALLOC_MMAP_THRESHOLD_=131072 "${LT[@]}" run-one --model "$WORK/model" --seq-len "$n" --mode "$mode" --warmup $LT_WARMUP --steps $LT_STEPS --threads "$THREADS" --lm-head "$LM_HEAD"
      fi
    done
  done
done

# 5. The report.
REPORT_ARGS=(--results "$RESULTS" --model "$WORK/model" --config "$CONFIG" --info "$WORK/info.json" --check "$WORK/check.txt" --commands "$CMDS" --out "$OUT" --steps "$STEPS" --threads "$THREADS" --lm-head "$LM_HEAD" --lt-env "$LT_ENV")
if [ "$SMOKE" = 1 ]; then REPORT_ARGS+=(--smoke); fi
"${LT[@]}" report "${REPORT_ARGS[@]}"
