"""Reference gradients for the training tests: random Llama / Qwen2 / Mistral models built by transformers, one
sequence through the model in float32 (eager attention), cross-entropy averaged over the positions with a target,
and every parameter's gradient from torch autograd.

Usage: training_interop.py OUT_DIR [CASE ...]
Writes OUT_DIR/<case>/ (a model directory saved by transformers as safetensors) plus
  reference.json  {"input_ids", "targets" (-1: no loss), "positions", "document_start" (or null), "loss"}
  grads.safetensors  every parameter's gradient under its transformers name (float32).
"""
import json, os, sys
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

torch.set_num_threads(2)
out = sys.argv[1]
SEQ = 320          # spans several query tiles (64) and key blocks (96 forward, 256 backward)
VOCAB = 300
base = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5, initializer_range=0.08,
            tie_word_embeddings=False)

def rope(kind, **kw):
    d = {"rope_type": kind, "rope_theta": 10000.0}
    d.update(kw)
    return d

# name: (config class, model class, config overrides, documents)
cases = {
    "llama": (LlamaConfig, LlamaForCausalLM, dict(rope_parameters=rope("default")), None),
    "llama-tied-bias": (LlamaConfig, LlamaForCausalLM, dict(tie_word_embeddings=True, attention_bias=True, mlp_bias=True,
                                                            rope_parameters=rope("default", rope_theta=500000.0)), None),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, dict(rope_parameters=rope("default", rope_theta=1000000.0)), None),
    "mistral-window": (MistralConfig, MistralForCausalLM, dict(sliding_window=48, rope_parameters=rope("default")), None),
    "llama-yarn": (LlamaConfig, LlamaForCausalLM, dict(max_position_embeddings=512, rope_parameters=rope("yarn", factor=4.0, original_max_position_embeddings=128)), None),
    "llama-llama3": (LlamaConfig, LlamaForCausalLM, dict(max_position_embeddings=512, rope_parameters=rope("llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=64)), None),
    "llama-linear": (LlamaConfig, LlamaForCausalLM, dict(max_position_embeddings=128, rope_parameters=rope("linear", factor=4.0)), None),
    # Packed documents: a block-diagonal causal mask given to transformers explicitly.
    "llama-docmask": (LlamaConfig, LlamaForCausalLM, dict(rope_parameters=rope("default")), "mask"),
    # The same with positions restarting at every document.
    "llama-docmask-reset": (LlamaConfig, LlamaForCausalLM, dict(rope_parameters=rope("default")), "reset"),
    "mistral-window-docmask": (MistralConfig, MistralForCausalLM, dict(sliding_window=48, rope_parameters=rope("default")), "mask"),
}
only = set(sys.argv[2:])
for name, (cfg_cls, model_cls, extra, docs) in cases.items():
    if only and name not in only:
        continue
    kw = dict(base); kw.update(extra)
    cfg = cfg_cls(**kw)
    torch.manual_seed(sum(map(ord, name)))
    model = model_cls(cfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif n.endswith(".bias"):
                p.copy_(0.05 * torch.randn_like(p))
    d = os.path.join(out, name)
    model.save_pretrained(d, safe_serialization=True)
    model = model_cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    model.train()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (1, SEQ), generator=g)
    targets = torch.cat([ids[0, 1:], torch.tensor([-1])])
    # Some positions carry no loss (answer-only style masks).
    targets[torch.randperm(SEQ, generator=g)[:40]] = -1
    positions = torch.arange(SEQ)
    starts = None
    kwargs = {}
    if docs:
        bounds = [0, 37, 150, 151, 260, SEQ]   # documents of 37, 113, 1, 109 and 60 tokens
        starts = torch.zeros(SEQ, dtype=torch.long)
        for a, b in zip(bounds[:-1], bounds[1:]):
            starts[a:b] = a
            targets[b - 1] = -1                # no prediction across a document boundary
        i = torch.arange(SEQ)
        visible = (i[None, :] <= i[:, None]) & (i[None, :] >= starts[:, None])
        if "sliding_window" in extra:
            visible &= (i[:, None] - i[None, :]) < extra["sliding_window"]
        mask = torch.zeros(1, 1, SEQ, SEQ)
        mask[0, 0][~visible] = torch.finfo(torch.float32).min
        kwargs["attention_mask"] = mask
        if docs == "reset":
            positions = i - starts
        kwargs["position_ids"] = positions[None, :]
    logits = model(ids, **kwargs).logits[0]
    loss = F.cross_entropy(logits, targets, ignore_index=-1)
    loss.backward()
    grads = {n: p.grad.detach().float().contiguous() for n, p in model.named_parameters()}
    save_file(grads, os.path.join(d, "grads.safetensors"))
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump({"input_ids": ids[0].tolist(), "targets": targets.tolist(), "positions": positions.tolist(),
                   "document_start": None if starts is None else starts.tolist(), "loss": loss.item()}, f)
print("ok")
