"""PyTorch peer of `longctx-bench train`: full fine-tuning steps of a transformers causal LM on CPU in f32.

Usage: bench_train_torch.py MODEL_DIR N [STEPS]. AutoModelForCausalLM (f32, sdpa attention), torch.set_num_threads
from OMP_NUM_THREADS (2), one random N-token sequence per step (seeded), labels = the inputs (transformers shifts
them: N-1 loss tokens, mean cross-entropy), loss.backward() then torch.optim.AdamW.step() and zero_grad. One
256-token warm-up step (it also creates AdamW's moments), then STEPS timed steps; prints the best as one JSON line
with peak RSS from resource.getrusage.
"""
import json, os, resource, sys, time

import torch
from transformers import AutoModelForCausalLM

directory, n = sys.argv[1], int(sys.argv[2])
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 1
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, attn_implementation="sdpa")
model.train()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
g = torch.Generator().manual_seed(3)
ids = torch.randint(0, model.config.vocab_size, (1, n), generator=g)

best = None
for s in range(steps + 1):
    x = ids[:, :256] if s == 0 else ids
    t0 = time.perf_counter()
    loss = model(input_ids=x, labels=x).loss
    loss.backward()
    t1 = time.perf_counter()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    t2 = time.perf_counter()
    if s > 0 and (best is None or t2 - t0 < best["seconds"]):
        best = {"seconds": t2 - t0, "forward_backward_seconds": t1 - t0, "optimizer_seconds": t2 - t1,
                "loss": loss.detach().item()}
best.update(bench="train-torch", tokens=n, tokens_per_second=n / best["seconds"],
            peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
print(json.dumps(best))
