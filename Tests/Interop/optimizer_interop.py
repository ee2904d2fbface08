"""Reference optimizer runs for Tests/TrainingTests/OptimizerTests.swift.

Usage: optimizer_interop.py adamw CONFIG_JSON   -> JSON: initial params, per-step grads, and after each step
                                                  the params, exp_avg, exp_avg_sq, the clip norm and the lr used
       optimizer_interop.py schedules CONFIG_JSON -> JSON: per case, the lr LambdaLR gives at each optimizer step
       optimizer_interop.py decay               -> JSON: parameter names of tiny models and Trainer's decay set

torch.optim.AdamW (CPU, default single-tensor path) + torch.nn.utils.clip_grad_norm_ + transformers' schedule
functions through LambdaLR, all f32.
"""
import json
import sys
import warnings

import torch
import transformers
from transformers import optimization as opt

warnings.filterwarnings("ignore")


def schedule(optimizer, kind, warmup, total, min_ratio):
    if kind == "cosine" and min_ratio > 0:
        return opt.get_cosine_with_min_lr_schedule_with_warmup(optimizer, warmup, total, min_lr_rate=min_ratio)
    if kind == "cosine":
        return opt.get_cosine_schedule_with_warmup(optimizer, warmup, total)
    if kind == "linear":
        return opt.get_linear_schedule_with_warmup(optimizer, warmup, total)
    if kind == "constant":
        return opt.get_constant_schedule_with_warmup(optimizer, warmup)
    raise ValueError(kind)


def flat(tensors):
    return [t.detach().reshape(-1).tolist() for t in tensors]


def adamw(cfg):
    torch.manual_seed(cfg["seed"])
    params = [torch.nn.Parameter(torch.randn(*shape)) for shape in cfg["shapes"]]
    grads = [[torch.randn(*shape) * scale for shape in cfg["shapes"]] for scale in cfg["grad_scales"]]
    decay = [p for p, d in zip(params, cfg["decays"]) if d]
    no_decay = [p for p, d in zip(params, cfg["decays"]) if not d]
    groups = [{"params": decay, "weight_decay": cfg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"])
    sched = schedule(optimizer, cfg["kind"], cfg["warmup"], cfg["total"], cfg["min_ratio"])
    for _ in range(cfg["start"]):  # begin mid-schedule (as after a resume)
        sched.step()
    out = {"params0": flat(params), "grads": [flat(g) for g in grads], "steps": []}
    for g in grads:
        for p, gi in zip(params, g):
            p.grad = gi.clone()
        lr = optimizer.param_groups[0]["lr"]
        norm = torch.nn.utils.clip_grad_norm_(params, cfg["max_norm"])
        optimizer.step()
        sched.step()
        state = [optimizer.state[p] for p in params]
        out["steps"].append({"lr": lr, "norm": norm.item(), "params": flat(params),
                             "m": flat([s["exp_avg"] for s in state]), "v": flat([s["exp_avg_sq"] for s in state])})
    return out


def schedules(cfg):
    out = []
    for case in cfg["cases"]:
        p = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.AdamW([p], lr=case["lr"])
        sched = schedule(optimizer, case["kind"], case["warmup"], case["total"], case["min_ratio"])
        lrs = []
        for _ in range(cfg["steps"]):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            sched.step()
        out.append(lrs)
    return out


def decay_names():
    from transformers import Trainer
    configs = {
        "llama": transformers.LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                          num_attention_heads=2, num_key_value_heads=1, attention_bias=True),
        "qwen2": transformers.Qwen2Config(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                          num_attention_heads=2, num_key_value_heads=1),
        "qwen3": transformers.Qwen3Config(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                          num_attention_heads=2, num_key_value_heads=1, head_dim=8),
    }
    out = {}
    for name, config in configs.items():
        model = transformers.AutoModelForCausalLM.from_config(config)
        names = [n for n, _ in model.named_parameters()]
        out[name] = {"names": names, "decay": Trainer.get_decay_parameter_names(None, model)}
    return out


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "adamw":
        result = adamw(json.loads(sys.argv[2]))
    elif mode == "schedules":
        result = schedules(json.loads(sys.argv[2]))
    else:
        result = decay_names()
    print(json.dumps(result))
