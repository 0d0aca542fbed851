#!/usr/bin/python3
"""PyTorch reference for MiniSeq's LoRA: writes tests/MiniSeq.Tests/TestData/lora/<case>/.

How to run (from the repository root, after make_golden.py has written the base cases):

    /usr/bin/python3 tests/reference/make_lora_golden.py

Each case reuses a golden base model (TestData/golden/<base>/: config, weights, tokens) and adds LoRA adapters of
rank r on the listed target modules, with PEFT's state-dict names and adapter_config.json. A is drawn as PEFT does
(Kaiming-uniform, a = sqrt(5): U(-1/sqrt(in), 1/sqrt(in))); B is drawn N(0, 0.05) instead of PEFT's zeros so that
every gradient (A's included) is non-trivial. The reference computes the model with effective weights
W + (alpha/r) * B @ A -- the same function as PEFT's x W^T + (alpha/r) (x A^T) B^T -- in float64, with the base
frozen, and writes:
  adapter_model.safetensors   the adapters (F32), PEFT names (base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight)
  adapter_config.json         PEFT's LoraConfig fields
  expected.safetensors        loss; grad.<name> for every adapter tensor (float64 reference, stored F32);
                              losses (3 AdamW steps on the adapters only, lr 1e-2, betas (0.9, 0.95), wd 0.1, float64)
                              and step3.<name>: the adapters after those steps.
Never run by CI; deterministic.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import make_golden as G  # noqa: E402

OUT_ROOT = os.path.join(G.REPO, "tests", "MiniSeq.Tests", "TestData", "lora")
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CASES = [
    dict(name="gqa2_untied_all_lm_head", base="gqa2_untied", rank=4, alpha=8.0, targets=ALL + ["lm_head"], seed=2001),
    dict(name="qwen2_bias_tied_qv", base="qwen2_bias_tied", rank=2, alpha=16.0, targets=["q_proj", "v_proj"], seed=2002),
    dict(name="qwen3_qk_norm_all", base="qwen3_qk_norm", rank=3, alpha=3.0, targets=ALL, seed=2003),
]
ADAMW = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)


def module_path(target, layer):
    if target == "lm_head":
        return "lm_head"
    group = "self_attn" if target in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
    return f"model.layers.{layer}.{group}.{target}"


def adapter_shapes(cfg, target):
    C, F = cfg["hidden_size"], cfg["intermediate_size"]
    D = G.head_dim(cfg)
    HD, KVD = cfg["num_attention_heads"] * D, cfg["num_key_value_heads"] * D
    return {"q_proj": (C, HD), "k_proj": (C, KVD), "v_proj": (C, KVD), "o_proj": (HD, C),
            "gate_proj": (C, F), "up_proj": (C, F), "down_proj": (F, C),
            "lm_head": (C, cfg["vocab_size"])}[target]


def make_adapters(cfg, case):
    g = torch.Generator().manual_seed(case["seed"])
    out = {}
    layers = range(cfg["num_hidden_layers"])
    for l in layers:
        for t in ALL:
            if t in case["targets"]:
                add(out, cfg, case, t, l, g)
    if "lm_head" in case["targets"]:
        add(out, cfg, case, "lm_head", -1, g)
    return out


def add(out, cfg, case, target, layer, g):
    fan_in, fan_out = adapter_shapes(cfg, target)
    r = case["rank"]
    bound = 1.0 / fan_in ** 0.5
    a = (torch.rand(r, fan_in, generator=g, dtype=torch.float64) * 2 - 1) * bound
    b = torch.randn(fan_out, r, generator=g, dtype=torch.float64) * 0.05
    p = "base_model.model." + module_path(target, layer)
    out[p + ".lora_A.weight"] = a.float()
    out[p + ".lora_B.weight"] = b.float()


def effective(params, adapters, case, cfg):
    """Base weights with every adapter folded in: W + s * B @ A (differentiable in the adapters)."""
    s = case["alpha"] / case["rank"]
    eff = dict(params)
    for name in adapters:
        if not name.endswith(".lora_A.weight"):
            continue
        module = name[len("base_model.model."):-len(".lora_A.weight")]
        b = adapters[name.replace("lora_A", "lora_B")]
        base = module + ".weight"
        if module == "lm_head" and cfg["tie_word_embeddings"]:
            raise ValueError("lm_head adapters on tied embeddings are not in the reference")
        eff[base] = params[base] + s * (b @ adapters[name])
    return eff


def loss_of(cfg, params, adapters, case, ids, labels):
    loss, _ = G.forward(cfg, effective(params, adapters, case, cfg), ids, labels, f64_rope=True)
    return loss


def run(case):
    base_dir = os.path.join(G.OUT_ROOT, case["base"])
    with open(os.path.join(base_dir, "config.json")) as f:
        cfg = json.load(f)
    params, _ = G.load_safetensors(os.path.join(base_dir, "model.safetensors"))
    with open(os.path.join(base_dir, "tokens.json")) as f:
        tok = json.load(f)
    ids = torch.tensor(tok["input_ids"], dtype=torch.int64)
    labels = torch.tensor(tok["labels"], dtype=torch.int64) if "labels" in tok else G.derive_shift_labels(ids)
    adapters = make_adapters(cfg, case)

    p64 = {n: t.double() for n, t in params.items()}
    leaf = {n: t.double().clone().requires_grad_(True) for n, t in adapters.items()}
    loss = loss_of(cfg, p64, leaf, case, ids, labels)
    loss.backward()
    exp = {"loss": torch.tensor([loss.item()], dtype=torch.float32)}
    for n in adapters:
        exp["grad." + n] = leaf[n].grad.float()

    # Three AdamW steps on the adapters only (decay on every adapter matrix, as the HF Trainer does).
    leaf = {n: t.double().clone().requires_grad_(True) for n, t in adapters.items()}
    opt = torch.optim.AdamW(list(leaf.values()), lr=ADAMW["lr"], betas=ADAMW["betas"], eps=ADAMW["eps"],
                            weight_decay=ADAMW["weight_decay"])
    losses = []
    for _ in range(3):
        opt.zero_grad()
        l3 = loss_of(cfg, p64, leaf, case, ids, labels)
        l3.backward()
        losses.append(l3.item())
        opt.step()
    exp["losses"] = torch.tensor(losses, dtype=torch.float32)
    for n in adapters:
        exp["step3." + n] = leaf[n].detach().float()

    out = os.path.join(OUT_ROOT, case["name"])
    os.makedirs(out, exist_ok=True)
    G.save_safetensors(os.path.join(out, "adapter_model.safetensors"), adapters)
    G.save_safetensors(os.path.join(out, "expected.safetensors"), exp)
    peft = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": case["base"],
        "r": case["rank"], "lora_alpha": case["alpha"], "lora_dropout": 0.0, "bias": "none",
        "target_modules": case["targets"], "fan_in_fan_out": False, "use_rslora": False, "use_dora": False,
        "init_lora_weights": True, "inference_mode": True, "modules_to_save": None,
    }
    with open(os.path.join(out, "adapter_config.json"), "w") as f:
        json.dump(peft, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "case.json"), "w") as f:
        json.dump({"base": case["base"], "adamw": ADAMW}, f, indent=2)
        f.write("\n")
    print(f"[{case['name']}] loss={loss.item():.6f} losses={['%.6f' % x for x in losses]} "
          f"adapter tensors={len(adapters)}")


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT_ROOT, exist_ok=True)
    for case in CASES:
        run(case)
    with open(os.path.join(OUT_ROOT, "README.md"), "w") as f:
        f.write("# LoRA golden data\n\nWritten by `/usr/bin/python3 tests/reference/make_lora_golden.py` (PyTorch 1.13, "
                "float64 reference); see the script's docstring for what each file holds. Each case adds adapters to the "
                "golden base model named in its case.json (TestData/golden/<base>/).\n")


if __name__ == "__main__":
    main()
