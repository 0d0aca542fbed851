#!/usr/bin/python3
"""PyTorch speed / memory baseline for MiniSeq (fp32 Llama training on CPU).

Usage (from the repository root; never run by CI):

    env -u OPENBLAS_CORETYPE /usr/bin/python3 tests/reference/bench_torch.py \
        --hidden 256 --layers 4 --heads 8 --kv-heads 2 --intermediate 896 --vocab 8192 \
        --seq-len 4096 --batch 1 --steps 4 --mode vanilla --threads 2 --attention chunked

Prints ONE JSON line: tokens_per_s (median over the steps after 1 warm-up step), step times,
peak RSS (resource.getrusage ru_maxrss, in bytes), the RSS right after ``import torch``, the BLAS
library actually mapped into the process, and the configuration.

Timings are only meaningful on an otherwise idle machine: the JSON line records the load average
before/after and the process CPU time per step (process_cpu_s should be ~threads x step_s).

Requirements: Debian ``python3-torch`` (PyTorch 1.13, CPU); run it with ``/usr/bin/python3`` (the
``python3`` first on PATH may be another interpreter without torch).

BLAS: Debian's torch is built with ``BLAS_INFO=generic``: fp32 matmuls go to whatever
``libblas.so.3`` the Debian alternatives system points at. It must be OpenBLAS, not the reference
netlib BLAS (which is ~10x slower). Check with

    update-alternatives --display libblas.so.3-x86_64-linux-gnu
    /usr/bin/python3 -c "import torch; print(torch.__config__.show())"

(the JSON line printed here also contains ``blas_library`` = the libblas/libopenblas file actually
mapped, and ``openblas_corename``). To select OpenBLAS system-wide (root):

    update-alternatives --set libblas.so.3-x86_64-linux-gnu \
        /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3      # or .../openblas-openmp/...

or per process, without root (this is what the script does by default, see --blas):

    LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp /usr/bin/python3 tests/reference/bench_torch.py ...

Use the OpenMP build of OpenBLAS (package libopenblas0-openmp): torch's own parallel loops use
libgomp, and with the pthread build OpenBLAS runs its own worker threads while torch's OpenMP workers
are still spin-waiting, i.e. ~2x oversubscription with --threads 2. By default (--blas openmp) the
script re-executes itself with LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp (and
without OPENBLAS_CORETYPE); --blas pthread picks the pthread build, --blas system leaves the loader
alone (whatever update-alternatives selected).

OPENBLAS_CORETYPE must be unset (some environments preset ``Haswell``, which forces AVX2 kernels on
an AVX-512 CPU); this script removes it from its own environment before torch (and thus OpenBLAS)
is loaded, and sets OMP_NUM_THREADS / OPENBLAS_NUM_THREADS to --threads; torch.set_num_threads is
called as well.

Modes:
  vanilla          plain autograd (full [T, V] logits, all activations saved)
  checkpoint       every decoder layer wrapped in torch.utils.checkpoint
  mst              Mini-Sequence Transformer: the MLP is a custom autograd Function that saves only
                   its input and recomputes per chunk of `hidden` tokens in backward; the LM head +
                   cross-entropy is a custom Function that, per chunk of ceil(T*C/V) tokens,
                   computes the logits, the loss and the chunk's dlogits in forward, accumulates
                   dH (per token) and dW exactly once, and divides by the number of valid labels at
                   the end (sum-then-divide); backward only scales the saved dH/dW by grad_output
  mst+checkpoint   both
Attention:
  chunked          queries in blocks of 1024 against their causal prefix (no full T x T matrix),
                   each block wrapped in torch.utils.checkpoint so backward recomputes it
  sdpa             torch 1.13's F._scaled_dot_product_attention(is_causal=True) (the CPU math
                   path; it materialises the full T x T scores) on repeat_kv'd keys/values
"""

import argparse
import json
import os
import sys

_args_threads = None
for _i, _a in enumerate(sys.argv):
    if _a == "--threads" and _i + 1 < len(sys.argv):
        _args_threads = sys.argv[_i + 1]
    elif _a.startswith("--threads="):
        _args_threads = _a.split("=", 1)[1]
_blas = "openmp"
for _i, _a in enumerate(sys.argv):
    if _a == "--blas" and _i + 1 < len(sys.argv):
        _blas = sys.argv[_i + 1]
    elif _a.startswith("--blas="):
        _blas = _a.split("=", 1)[1]
_BLAS_DIRS = {"openmp": "/usr/lib/x86_64-linux-gnu/openblas-openmp",
              "pthread": "/usr/lib/x86_64-linux-gnu/openblas-pthread"}
if _blas in _BLAS_DIRS and os.path.isdir(_BLAS_DIRS[_blas]):
    _ld = os.environ.get("LD_LIBRARY_PATH", "")
    if not _ld.startswith(_BLAS_DIRS[_blas]) or "OPENBLAS_CORETYPE" in os.environ:
        # The dynamic loader reads LD_LIBRARY_PATH only at process start: re-exec ourselves.
        os.environ["LD_LIBRARY_PATH"] = _BLAS_DIRS[_blas] + (":" + _ld if _ld else "")
        os.environ.pop("OPENBLAS_CORETYPE", None)
        os.execv(sys.executable, [sys.executable] + sys.argv)
os.environ.pop("OPENBLAS_CORETYPE", None)
if _args_threads is not None:
    os.environ["OMP_NUM_THREADS"] = _args_threads
    os.environ["OPENBLAS_NUM_THREADS"] = _args_threads

import ctypes  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402


def _rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return -1


RSS_BEFORE_TORCH = _rss_bytes()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch.utils.checkpoint as tcp  # noqa: E402

RSS_AFTER_IMPORT = _rss_bytes()
MAXRSS_AFTER_IMPORT = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def blas_info():
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and ("blas" in parts[5] or "lapack" in parts[5]):
                libs.add(os.path.realpath(parts[5]))
    info = {"blas_library": sorted(libs)}
    try:
        ob = ctypes.CDLL("libopenblas.so.0")
        # the already-loaded copy if the same soname is mapped; otherwise this loads the default one
        ob.openblas_get_corename.restype = ctypes.c_char_p
        ob.openblas_get_config.restype = ctypes.c_char_p
        ob.openblas_get_num_threads.restype = ctypes.c_int
        info["openblas_corename"] = ob.openblas_get_corename().decode()
        info["openblas_config"] = ob.openblas_get_config().decode()
        info["openblas_num_threads"] = ob.openblas_get_num_threads()
    except OSError as e:  # pragma: no cover
        info["openblas_error"] = str(e)
    return info


# --------------------------------------------------------------------------------------
# Model pieces
# --------------------------------------------------------------------------------------

def rms_norm(x, w, eps):
    variance = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(variance + eps))


def rope_tables(T, D, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    freqs = torch.arange(T, dtype=torch.int64).float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def apply_rope(x, cos, sin):
    return x * cos + rotate_half(x) * sin


def _attn_block(q_blk, k_pre, v_pre, start):
    """q_blk: (B, KvH, rep, n, D) queries at positions start..start+n-1;
    k_pre/v_pre: (B, KvH, start+n, D). Returns (B, KvH, rep, n, D)."""
    B, KvH, rep, n, D = q_blk.shape
    S = k_pre.shape[2]
    scores = torch.matmul(q_blk.reshape(B, KvH, rep * n, D), k_pre.transpose(-1, -2))
    scores = scores.view(B, KvH, rep, n, S) * (D ** -0.5)
    # causal: query i (absolute start+i) sees keys 0..start+i
    qi = torch.arange(start, start + n)[:, None]
    kj = torch.arange(S)[None, :]
    scores = scores.masked_fill(kj > qi, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    out = torch.matmul(probs.view(B, KvH, rep * n, S), v_pre)
    return out.view(B, KvH, rep, n, D)


def attention_chunked(q, k, v, block=1024, recompute=True):
    """q: (B, H, T, D); k, v: (B, KvH, T, D), RoPE already applied. GQA without repeat_kv copies."""
    B, H, T, D = q.shape
    KvH = k.shape[1]
    rep = H // KvH
    qg = q.view(B, KvH, rep, T, D)
    outs = []
    for s in range(0, T, block):
        e = min(T, s + block)
        q_blk = qg[:, :, :, s:e]
        k_pre, v_pre = k[:, :, :e], v[:, :, :e]
        if recompute and torch.is_grad_enabled():
            o = tcp.checkpoint(_attn_block, q_blk, k_pre, v_pre, s, use_reentrant=True,
                               preserve_rng_state=False)
        else:
            o = _attn_block(q_blk, k_pre, v_pre, s)
        outs.append(o)
    return torch.cat(outs, dim=3).view(B, H, T, D)


def attention_sdpa(q, k, v):
    B, H, T, D = q.shape
    rep = H // k.shape[1]
    if rep > 1:
        k = k[:, :, None].expand(B, k.shape[1], rep, T, D).reshape(B, H, T, D)
        v = v[:, :, None].expand(B, v.shape[1], rep, T, D).reshape(B, H, T, D)
    out, _ = F._scaled_dot_product_attention(q, k, v, None, 0.0, False, True)
    return out


class ChunkedMLP(torch.autograd.Function):
    """down(silu(h Wg^T) * (h Wu^T)); saves only h (and the weights); recomputes per chunk."""

    @staticmethod
    def forward(ctx, h, wg, wu, wd, chunk):
        shape = h.shape
        h2 = h.reshape(-1, shape[-1])
        out = torch.empty(h2.shape[0], wd.shape[0], dtype=h.dtype)
        for s in range(0, h2.shape[0], chunk):
            hc = h2[s:s + chunk]
            torch.matmul(F.silu(hc @ wg.t()) * (hc @ wu.t()), wd.t(), out=out[s:s + chunk])
        ctx.save_for_backward(h, wg, wu, wd)
        ctx.chunk = chunk
        return out.view(*shape[:-1], wd.shape[0])

    @staticmethod
    def backward(ctx, dy):
        h, wg, wu, wd = ctx.saved_tensors
        chunk = ctx.chunk
        shape = h.shape
        h2 = h.reshape(-1, shape[-1])
        dy2 = dy.reshape(-1, dy.shape[-1])
        dh = torch.empty_like(h2)
        dwg, dwu, dwd = torch.zeros_like(wg), torch.zeros_like(wu), torch.zeros_like(wd)
        for s in range(0, h2.shape[0], chunk):
            hc, dyc = h2[s:s + chunk], dy2[s:s + chunk]
            g = hc @ wg.t()
            u = hc @ wu.t()
            sg = torch.sigmoid(g)
            a = g * sg
            dwd.addmm_(dyc.t(), a * u)
            dau = dyc @ wd
            du = dau * a
            dg = dau * u * (sg * (1 + g * (1 - sg)))
            torch.matmul(dg, wg, out=dh[s:s + chunk])
            dh[s:s + chunk].addmm_(du, wu)
            dwg.addmm_(dg.t(), hc)
            dwu.addmm_(du.t(), hc)
        return dh.view(shape), dwg, dwu, dwd, None


class ChunkedLMHeadCE(torch.autograd.Function):
    """mean CE(h W^T, labels), ignore_index=-100. Gradients computed in forward, chunk by chunk."""

    @staticmethod
    def forward(ctx, h, w, labels, chunk):
        h2 = h.reshape(-1, h.shape[-1])
        lab = labels.reshape(-1)
        n = h2.shape[0]
        dh = torch.empty_like(h2)
        dw = torch.zeros_like(w)
        total = torch.zeros((), dtype=torch.float64)
        for s in range(0, n, chunk):
            hc, lc = h2[s:s + chunk], lab[s:s + chunk]
            logits = hc @ w.t()
            valid = lc != -100
            safe = lc.clamp_min(0)
            lse = torch.logsumexp(logits, dim=-1)
            picked = logits.gather(1, safe[:, None])[:, 0]
            total += ((lse - picked) * valid).sum(dtype=torch.float64)
            # dlogits = softmax - onehot on valid rows, 0 on ignored rows (in place on logits)
            dl = logits.sub_(lse[:, None]).exp_()
            dl[torch.arange(dl.shape[0]), safe] -= 1.0
            dl.mul_(valid[:, None].to(dl.dtype))
            torch.matmul(dl, w, out=dh[s:s + chunk])
            dw.addmm_(dl.t(), hc)
        count = int((lab != -100).sum())
        inv = 1.0 / max(count, 1)
        dh.mul_(inv)
        dw.mul_(inv)
        ctx.save_for_backward(dh, dw)
        ctx.hshape = h.shape
        return (total / max(count, 1)).to(h.dtype)

    @staticmethod
    def backward(ctx, g):
        dh, dw = ctx.saved_tensors
        return (dh * g).view(ctx.hshape), dw * g, None, None


class Llama(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        C, H, KvH, Fi, V = a.hidden, a.heads, a.kv_heads, a.intermediate, a.vocab
        self.a = a
        self.D = C // H
        P = torch.nn.Parameter

        def lin(o, i):
            return P(torch.empty(o, i).normal_(0.0, 0.02))

        self.embed = P(torch.empty(V, C).normal_(0.0, 0.02))
        self.layers = torch.nn.ModuleList()
        for _ in range(a.layers):
            m = torch.nn.Module()
            m.wq, m.wk, m.wv, m.wo = lin(H * self.D, C), lin(KvH * self.D, C), lin(KvH * self.D, C), lin(C, H * self.D)
            m.wg, m.wu, m.wd = lin(Fi, C), lin(Fi, C), lin(C, Fi)
            m.n1, m.n2 = P(torch.ones(C)), P(torch.ones(C))
            self.layers.append(m)
        self.norm = P(torch.ones(C))
        self.lm_head = lin(V, C)

    def layer(self, x, m, cos, sin):
        a = self.a
        B, T, C = x.shape
        H, KvH, D = a.heads, a.kv_heads, self.D
        mst = a.mode.startswith("mst")
        h = rms_norm(x, m.n1, a.eps)
        q = (h @ m.wq.t()).view(B, T, H, D).transpose(1, 2)
        k = (h @ m.wk.t()).view(B, T, KvH, D).transpose(1, 2)
        v = (h @ m.wv.t()).view(B, T, KvH, D).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if a.attention == "chunked":
            o = attention_chunked(q, k, v.contiguous(), block=a.attn_block)
        else:
            o = attention_sdpa(q, k, v)
        x = x + o.transpose(1, 2).reshape(B, T, H * D) @ m.wo.t()
        h = rms_norm(x, m.n2, a.eps)
        if mst:
            y = ChunkedMLP.apply(h, m.wg, m.wu, m.wd, a.hidden)
        else:
            y = (F.silu(h @ m.wg.t()) * (h @ m.wu.t())) @ m.wd.t()
        return x + y

    def forward(self, ids, labels):
        a = self.a
        B, T = ids.shape
        cos, sin = rope_tables(T, self.D, a.rope_theta)
        x = self.embed[ids]
        for m in self.layers:
            if a.mode.endswith("checkpoint"):
                x = tcp.checkpoint(self.layer, x, m, cos, sin, use_reentrant=True, preserve_rng_state=False)
            else:
                x = self.layer(x, m, cos, sin)
        x = rms_norm(x, self.norm, a.eps)
        if a.mode.startswith("mst"):
            chunk = max(1, math.ceil(T * a.hidden / a.vocab))
            return ChunkedLMHeadCE.apply(x, self.lm_head, labels, chunk)
        logits = x @ self.lm_head.t()
        return F.cross_entropy(logits.view(-1, a.vocab), labels.view(-1), ignore_index=-100)


# --------------------------------------------------------------------------------------
# Self-test of the custom pieces (small, float64) -- --self-test
# --------------------------------------------------------------------------------------

def self_test():
    torch.manual_seed(0)
    ns = argparse.Namespace(hidden=32, layers=2, heads=4, kv_heads=2, intermediate=48, vocab=64, eps=1e-5,
                            rope_theta=10000.0, attention="chunked", attn_block=5, mode="vanilla")
    base = Llama(ns).double()
    with torch.no_grad():
        for p in base.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    ids = torch.randint(0, 64, (2, 13))
    labels = torch.randint(0, 64, (2, 13))
    labels[0, :3] = -100
    ref = None
    for mode in ("vanilla", "checkpoint", "mst", "mst+checkpoint"):
        for att in ("chunked", "sdpa"):
            ns.mode, ns.attention = mode, att
            base.zero_grad()
            loss = base(ids, labels)
            loss.backward()
            grads = [p.grad.clone() for p in base.parameters()]
            if ref is None:
                ref = (loss.item(), grads)
            err = max((g - r).abs().max().item() for g, r in zip(grads, ref[1]))
            print(f"self-test {mode:15s} {att:8s} loss {loss.item():.12f} max grad diff vs vanilla {err:.2e}",
                  file=sys.stderr)
            assert abs(loss.item() - ref[0]) < 1e-12 and err < 1e-12
    print("self-test ok", file=sys.stderr)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=896)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=4, help="total steps; the first is a warm-up")
    ap.add_argument("--mode", choices=["vanilla", "checkpoint", "mst", "mst+checkpoint"], default="vanilla")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attention", choices=["chunked", "sdpa"], default="chunked")
    ap.add_argument("--attn-block", type=int, default=1024)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--eps", type=float, default=1e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--blas", choices=["openmp", "pthread", "system"], default="openmp",
                    help="OpenBLAS variant to load (via LD_LIBRARY_PATH + re-exec); 'system' = the alternatives choice")
    ap.add_argument("--self-test", action="store_true", help="check modes/attentions agree (float64, tiny)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    if a.self_test:
        self_test()
        return

    torch.manual_seed(a.seed)
    model = Llama(a)
    params = list(model.parameters())
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    g = torch.Generator().manual_seed(a.seed + 1)
    ids = torch.randint(0, a.vocab, (a.batch, a.seq_len), generator=g)
    labels = torch.full_like(ids, -100)
    labels[:, :-1] = ids[:, 1:]

    load_before = os.getloadavg()
    times, cpu_times, losses = [], [], []
    for _ in range(a.steps):
        c0 = time.process_time()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(ids, labels)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        losses.append(loss.item())
        del loss
    measured = times[1:] if len(times) > 1 else times
    med = statistics.median(measured)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = {
        "tokens_per_s": a.batch * a.seq_len / med,
        "median_step_s": med,
        "step_s": times,
        "process_cpu_s": cpu_times,
        # Contention check: the machine must be otherwise idle for tokens_per_s to mean anything
        # (load average well below --threads + 1, and process_cpu_s ~= threads * step_s).
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        "losses": losses,
        "peak_rss_bytes": maxrss,
        "peak_rss_mib": maxrss / 2**20,
        "rss_after_import_torch_bytes": RSS_AFTER_IMPORT,
        "maxrss_after_import_torch_bytes": MAXRSS_AFTER_IMPORT,
        "rss_before_import_torch_bytes": RSS_BEFORE_TORCH,
        "num_params": sum(p.numel() for p in params),
        "config": {k: getattr(a, k) for k in ("hidden", "layers", "heads", "kv_heads", "intermediate", "vocab",
                                             "seq_len", "batch", "steps", "mode", "threads", "attention",
                                             "attn_block", "rope_theta", "eps", "seed", "blas")},
        "optimizer": "AdamW lr=1e-3 betas=(0.9,0.95) eps=1e-8 wd=0.1 (2-D) / 0 (1-D), fp32",
        "torch_version": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
    }
    out.update(blas_info())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
