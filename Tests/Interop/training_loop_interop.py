"""The PyTorch training loop the Swift trainer must reproduce: transformers model (f32, eager attention), AdamW with
decay on matrices only (biases and norm weights excluded, as transformers' Trainer does), clip_grad_norm_, LambdaLR
with transformers' cosine schedule with warmup, the mean cross-entropy over each step's target tokens.

Usage: training_loop_interop.py MODEL_DIR SEQUENCES_JSON OUT_JSON
SEQUENCES_JSON: {"steps": [[{"tokens": [...], "targets": [...]}, ...], ...], "lr", "warmup", "weight_decay",
                 "betas", "eps", "clip"}
Writes OUT_JSON: {"losses": [...], "grad_norms": [...], "lrs": [...]}.
"""
import json, sys
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, get_cosine_schedule_with_warmup

torch.set_num_threads(2)
model_dir, seq_path, out_path = sys.argv[1:4]
spec = json.load(open(seq_path))
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
model.train()
decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": spec["weight_decay"]},
                         {"params": no_decay, "weight_decay": 0.0}],
                        lr=spec["lr"], betas=tuple(spec["betas"]), eps=spec["eps"])
steps = spec["steps"]
sched = get_cosine_schedule_with_warmup(opt, spec["warmup"], len(steps))
losses, norms, lrs = [], [], []
for batch in steps:
    opt.zero_grad()
    count = sum(sum(1 for t in s["targets"] if t >= 0) for s in batch)
    total = 0.0
    for s in batch:
        ids = torch.tensor([s["tokens"]])
        logits = model(ids).logits[0]
        loss = F.cross_entropy(logits, torch.tensor(s["targets"]), ignore_index=-1, reduction="sum") / count
        loss.backward()
        total += loss.item()
    norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), spec["clip"]).item())
    lrs.append(sched.get_last_lr()[0])
    opt.step()
    sched.step()
    losses.append(total)
json.dump({"losses": losses, "grad_norms": norms, "lrs": lrs}, open(out_path, "w"))
