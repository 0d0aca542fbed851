#!/usr/bin/python3
"""PyTorch reference for MiniSeq's optimizer rules: writes tests/MiniSeq.Tests/TestData/optimizers/*.safetensors.

How to run (from the repository root):

    /usr/bin/python3 tests/reference/make_optimizer_golden.py

Requirements: Debian's ``python3-torch`` (PyTorch 1.13, CPU) and ``python3-numpy``; no ``safetensors`` package (the
files are written by hand, as make_golden.py does). Never run by CI; the outputs are committed. Deterministic: a
rerun on the same torch build reproduces the files byte for byte.

Per case (an optimizer and its hyper-parameters), in float32:
  * a fixed set of tensors: lengths 0, 1, 7, 16, 33, 127, 257, a 13 x 19 matrix and a zero-initialised 5-vector;
    ``vec_33`` and ``zeros_5`` are in the no-decay group (weight_decay 0), the others decay;
  * five steps, each with its own learning rate (a schedule) and its own gradients, drawn once from a seeded
    torch.Generator (the gradients do not depend on the parameters: a pure test of the update rule);
  * AdamW and SGD run through torch.optim (two param groups, as Hugging Face's Trainer builds them); Lion and LAMB,
    which torch 1.13 lacks, through the reference implementations below:
      - Lion: lucidrains/lion-pytorch's ``update_fn`` (decoupled decay, sign of the interpolation, then the momentum),
        copied operation for operation (MIT, https://github.com/lucidrains/lion-pytorch);
      - LAMB: the paper's Algorithm 2 (You et al. 2020) with Adam's bias correction, in the operation order of timm's
        ``Lamb`` / apex ``FusedLAMB``, with the trust ratio on every tensor (timm ``always_adapt=True``, apex
        ``use_nvlamb=True``), no trust clipping and no global gradient clipping (timm/apex ``max_grad_norm=None``).
        The two norms are taken in float64 and the ratio rounded to float32 once, as MiniSeq does (timm takes them in
        float32: a last-bit difference of the ratio).
  * written: every tensor's initial value, its gradient at each step, its value after each step, and its final
    optimizer state under PyTorch's state names; the hyper-parameters go into the safetensors ``__metadata__``.

Self-check before writing: for Lion, no element's sign argument is within 1e-5 (relative to its terms) of a tie, so a one-ulp
difference in how the interpolation is rounded cannot flip a sign.
"""

import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import make_golden as G  # noqa: E402  (the hand-written safetensors writer)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(REPO, "tests", "MiniSeq.Tests", "TestData", "optimizers")
STEPS = 5

# (name, shape, decays, initial values: "randn" or "zeros")
TENSORS = [
    ("vec_0", (0,), True, "randn"),
    ("vec_1", (1,), True, "randn"),
    ("vec_7", (7,), True, "randn"),
    ("vec_16", (16,), True, "randn"),
    ("vec_33", (33,), False, "randn"),
    ("vec_127", (127,), True, "randn"),
    ("vec_257", (257,), True, "randn"),
    ("matrix_13x19", (13, 19), True, "randn"),
    ("zeros_5", (5,), False, "zeros"),
]

ADAM_LRS = [1e-2, 2e-2, 1.5e-2, 5e-3, 1e-2]
SGD_LRS = [0.1, 0.2, 0.15, 0.05, 0.1]

CASES = [
    dict(case="adamw", optimizer="adamw", lrs=ADAM_LRS, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1),
    dict(case="sgd", optimizer="sgd", lrs=SGD_LRS, momentum=0.0, weight_decay=0.01),
    dict(case="sgd_momentum", optimizer="sgd", lrs=SGD_LRS, momentum=0.9, weight_decay=0.01),
    dict(case="sgd_nesterov", optimizer="sgd", lrs=SGD_LRS, momentum=0.9, nesterov=True, weight_decay=0.01),
    dict(case="sgd_dampening", optimizer="sgd", lrs=SGD_LRS, momentum=0.9, dampening=0.5, weight_decay=0.01),
    dict(case="lion", optimizer="lion", lrs=ADAM_LRS, betas=(0.9, 0.99), weight_decay=0.5),
    dict(case="lamb", optimizer="lamb", lrs=ADAM_LRS, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01),
]

STATE_NAMES = {
    "adamw": ["exp_avg", "exp_avg_sq"],
    "sgd": ["momentum_buffer"],
    "lion": ["exp_avg"],
    "lamb": ["exp_avg", "exp_avg_sq"],
}


# --------------------------------------------------------------------------------------
# Reference optimizers for what torch 1.13 lacks
# --------------------------------------------------------------------------------------

class Lion(torch.optim.Optimizer):
    """lucidrains/lion-pytorch (decoupled_weight_decay=False): one state, exp_avg."""

    def __init__(self, params, lr, betas, weight_decay):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                grad = p.grad
                state = self.state[p]
                if len(state) == 0:
                    state["exp_avg"] = torch.zeros_like(p)
                exp_avg = state["exp_avg"]
                # lion-pytorch update_fn, line for line:
                p.data.mul_(1.0 - lr * wd)
                update = exp_avg.clone().mul_(beta1).add(grad, alpha=1.0 - beta1).sign_()
                p.add_(update, alpha=-lr)
                exp_avg.mul_(beta2).add_(grad, alpha=1.0 - beta2)


class Lamb(torch.optim.Optimizer):
    """LAMB, the paper's Algorithm 2 with Adam bias correction; trust ratio on every tensor; float64 norms."""

    def __init__(self, params, lr, betas, eps, weight_decay):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                grad = p.grad
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                step = state["step"]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                bias_correction1 = 1 - beta1 ** step
                bias_correction2 = 1 - beta2 ** step
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(eps)
                update = (exp_avg / bias_correction1).div_(denom)
                update.add_(p, alpha=wd)
                w_norm = float(p.double().norm())
                u_norm = float(update.double().norm())
                trust = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
                update.mul_(trust)
                p.add_(update, alpha=-lr)


def make_optimizer(case, decay, no_decay):
    groups = [dict(params=decay), dict(params=no_decay, weight_decay=0.0)]
    lr, wd = case["lrs"][0], case["weight_decay"]
    name = case["optimizer"]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=case["betas"], eps=case["eps"], weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=case["momentum"], dampening=case.get("dampening", 0.0),
                               nesterov=case.get("nesterov", False), weight_decay=wd)
    if name == "lion":
        return Lion(groups, lr=lr, betas=case["betas"], weight_decay=wd)
    if name == "lamb":
        return Lamb(groups, lr=lr, betas=case["betas"], eps=case["eps"], weight_decay=wd)
    raise ValueError(name)


# --------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------

def initial_tensors(seed):
    gen = torch.Generator().manual_seed(seed)
    params = {}
    for name, shape, _, init in TENSORS:
        if init == "zeros":
            params[name] = torch.zeros(shape, dtype=torch.float32)
        else:
            params[name] = torch.randn(shape, generator=gen, dtype=torch.float32)
    grads = []
    for s in range(STEPS):
        # Gradient scales differ per step so that the moments do not settle; never exactly 0 (randn).
        scale = [1.0, 0.3, 2.0, 0.5, 1.0][s]
        grads.append({name: scale * torch.randn(shape, generator=gen, dtype=torch.float32) for name, shape, _, _ in TENSORS})
    return params, grads


def check_lion_ties(case, params, grads):
    """Every sign argument beta1*m + (1-beta1)*g is far from 0 relative to its terms."""
    beta1, beta2 = case["betas"]
    for name, _, _, _ in TENSORS:
        m = torch.zeros_like(params[name], dtype=torch.float64)
        for s in range(STEPS):
            g = grads[s][name].double()
            c = beta1 * m + (1 - beta1) * g
            scale = beta1 * m.abs() + (1 - beta1) * g.abs()
            if c.numel() > 0:
                margin = float((c.abs() / scale).min())
                assert margin > 1e-5, f"lion: near-tie in {name} at step {s + 1} (relative margin {margin:.2e}); change the seed"
            m = beta2 * m + (1 - beta2) * g


def run_case(case, seed):
    params0, grads = initial_tensors(seed)
    if case["optimizer"] == "lion":
        check_lion_ties(case, params0, grads)
    params = {name: torch.nn.Parameter(t.clone()) for name, t in params0.items()}
    decay = [params[name] for name, _, decays, _ in TENSORS if decays]
    no_decay = [params[name] for name, _, decays, _ in TENSORS if not decays]
    opt = make_optimizer(case, decay, no_decay)

    out = {}
    for name, _, _, _ in TENSORS:
        out[f"{name}/param_0"] = params0[name]
    for s in range(STEPS):
        for group in opt.param_groups:
            group["lr"] = case["lrs"][s]
        for name, _, _, _ in TENSORS:
            params[name].grad = grads[s][name].clone()
            out[f"{name}/grad_{s + 1}"] = grads[s][name]
        opt.step()
        for name, _, _, _ in TENSORS:
            out[f"{name}/param_{s + 1}"] = params[name].detach().clone()

    states = [] if case["optimizer"] == "sgd" and case["momentum"] == 0 else STATE_NAMES[case["optimizer"]]
    for name, _, _, _ in TENSORS:
        for state in states:
            out[f"{name}/{state}"] = opt.state[params[name]][state].detach().clone()

    def f(x):
        return repr(float(x))

    metadata = {
        "format": "miniseq-optimizer-golden",
        "generator": "tests/reference/make_optimizer_golden.py",
        "torch": torch.__version__,
        "optimizer": case["optimizer"],
        "steps": str(STEPS),
        "lr": ",".join(f(x) for x in case["lrs"]),
        "beta1": f(case.get("betas", (0.9, 0.999))[0]),
        "beta2": f(case.get("betas", (0.9, 0.999))[1]),
        "eps": f(case.get("eps", 1e-8)),
        "weight_decay": f(case["weight_decay"]),
        "momentum": f(case.get("momentum", 0.0)),
        "dampening": f(case.get("dampening", 0.0)),
        "nesterov": "true" if case.get("nesterov", False) else "false",
        "tensors": ",".join(name for name, _, _, _ in TENSORS),
        "no_decay": ",".join(name for name, _, decays, _ in TENSORS if not decays),
        "states": ",".join(states),
    }
    return out, metadata


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    for i, case in enumerate(CASES):
        tensors, metadata = run_case(case, seed=1000 + i)
        path = os.path.join(OUT, case["case"] + ".safetensors")
        G.save_safetensors(path, tensors, metadata=metadata)  # F32 only
        print(f"{case['case']}: {len(tensors)} tensors -> {os.path.relpath(path, REPO)}")


if __name__ == "__main__":
    main()
