#!/usr/bin/env python3
"""Back-to-back training-step speed and memory: PyTorch 1.13 (CPU, OpenBLAS) vs MiniSeq, same model, same mode,
same N, batch 1, fp32 AdamW. Prints a markdown table with tokens/s of both and the ratio.

Usage (repository root, after `dotnet build -c Release`; needs Debian python3-torch + an OpenBLAS libblas):

    python3 bench/compare_torch.py --seq-len 4096,8192,16384 --modes vanilla,mst+checkpoint --steps 3

PyTorch runs through tests/reference/bench_torch.py with /usr/bin/python3 (OPENBLAS_CORETYPE unset, 2 threads,
query-chunked attention); MiniSeq through `miniseq bench run-step` (one process per run). Runs alternate
PyTorch / MiniSeq for each (N, mode) so that both see the same machine state. Never run by CI.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(ROOT, "artifacts", "bin", "MiniSeq.Cli", "release", "miniseq.dll")
MODEL = ["--hidden", "256", "--layers", "4", "--heads", "8", "--kv-heads", "2", "--intermediate", "896", "--vocab", "8192"]


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("no JSON line in output:\n" + text[-2000:])


def run_torch(n, mode, steps, threads):
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    cmd = ["/usr/bin/python3", os.path.join(ROOT, "tests", "reference", "bench_torch.py"), *MODEL, "--seq-len", str(n),
           "--batch", "1", "--steps", str(steps), "--mode", mode, "--threads", str(threads), "--attention", "chunked"]
    return last_json(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)


def run_miniseq(n, mode, steps, threads):
    env = dict(os.environ, MINISEQ_THREADS=str(threads))
    cmd = ["dotnet", CLI, "bench", "run-step", "--config", "small", "--seq-len", str(n), "--mode", mode, "--steps", str(steps)]
    return last_json(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-len", default="4096,8192,16384")
    ap.add_argument("--modes", default="vanilla")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not os.path.exists(CLI):
        sys.exit(f"build first: {CLI} not found (dotnet build MiniSeq.slnx -c Release)")
    print("| mode | N | PyTorch tok/s | MiniSeq tok/s | ratio | PyTorch peak RSS | MiniSeq peak RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for mode in args.modes.split(","):
        for n in [int(x) for x in args.seq_len.split(",")]:
            t = run_torch(n, mode, args.steps, args.threads)
            m = run_miniseq(n, mode, args.steps, args.threads)
            tt, mt = t["tokens_per_s"], m["TokensPerSecond"]
            print(f"| {mode} | {n} | {tt:.0f} | {mt:.0f} | {mt / tt:.2f}x | {t['peak_rss_bytes'] / 2**20:.0f} MiB | "
                  f"{m['ProcessPeakRssBytes'] / 2**20:.0f} MiB |", flush=True)


if __name__ == "__main__":
    main()
