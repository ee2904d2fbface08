"""Reference logits for the engine tests: random Llama / Qwen2 / Mistral models built and run by transformers.

Usage: engine_interop.py OUT_DIR
Writes OUT_DIR/<case>/ (a model directory saved by transformers as safetensors) plus
OUT_DIR/<case>/reference.json ({"input_ids": [...], "decode_split": k}) and
OUT_DIR/<case>/logits.f32 (float32 little-endian, [len(input_ids), vocab], every position), and for the
BF16_CASES also OUT_DIR/<case>/logits_bf16.f32: the same model run by transformers in bfloat16 (weights rounded to
nearest even, every activation bf16), widened to float32.
"""
import json, os, sys
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

torch.manual_seed(0)
torch.set_num_threads(2)
out = sys.argv[1]
SEQ = 256
VOCAB = 300
base = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5, initializer_range=0.08,
            tie_word_embeddings=False)

def rope(kind, **kw):
    d = {"rope_type": kind, "rope_theta": 10000.0}
    d.update(kw)
    return d

half = 8  # head_dim 16 -> 8 frequencies
cases = {
    "llama-default": (LlamaConfig, LlamaForCausalLM, dict(rope_parameters=rope("default")), "float32"),
    "llama-tied-bias": (LlamaConfig, LlamaForCausalLM, dict(tie_word_embeddings=True, attention_bias=True, mlp_bias=True,
                                                            rope_parameters=rope("default", rope_theta=500000.0)), "float32"),
    "llama-headdim": (LlamaConfig, LlamaForCausalLM, dict(head_dim=32, rope_parameters=rope("default")), "float32"),
    "llama-bf16": (LlamaConfig, LlamaForCausalLM, dict(rope_parameters=rope("default")), "bfloat16"),
    "llama-linear": (LlamaConfig, LlamaForCausalLM, dict(max_position_embeddings=64, rope_parameters=rope("linear", factor=4.0)), "float32"),
    "llama-dynamic": (LlamaConfig, LlamaForCausalLM, dict(max_position_embeddings=64, rope_parameters=rope("dynamic", factor=2.0)), "float32"),
    "llama-yarn": (LlamaConfig, LlamaForCausalLM, dict(max_position_embeddings=256, rope_parameters=rope("yarn", factor=4.0, original_max_position_embeddings=64)), "float32"),
    "llama-llama3": (LlamaConfig, LlamaForCausalLM, dict(max_position_embeddings=256, rope_parameters=rope("llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=64)), "float32"),
    "llama-longrope": (LlamaConfig, LlamaForCausalLM, dict(max_position_embeddings=256, rope_parameters=rope("longrope", short_factor=[1.0 + 0.1 * i for i in range(half)], long_factor=[1.0 + 0.5 * i for i in range(half)], original_max_position_embeddings=64)), "float32"),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, dict(rope_parameters=rope("default", rope_theta=1000000.0)), "float32"),
    "qwen2-yarn": (Qwen2Config, Qwen2ForCausalLM, dict(max_position_embeddings=256, rope_parameters=rope("yarn", factor=4.0, original_max_position_embeddings=64, rope_theta=1000000.0)), "float32"),
    "mistral-window": (MistralConfig, MistralForCausalLM, dict(sliding_window=48, rope_parameters=rope("default")), "float32"),
}
BF16_CASES = {"llama-default", "llama-bf16", "qwen2", "llama-headdim"}  # llama-headdim: head_dim 32, attention on AMX
only = set(sys.argv[2:])
for name, (cfg_cls, model_cls, extra, dtype) in cases.items():
    if only and name not in only:
        continue
    kw = dict(base); kw.update(extra)
    cfg = cfg_cls(**kw)
    cfg._attn_implementation = "eager"
    torch.manual_seed(hash(name) % 1000)
    model = model_cls(cfg).eval()
    with torch.no_grad():
        # Larger-than-default norms and biases so every parameter matters in the logits.
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif n.endswith(".bias"):
                p.copy_(0.05 * torch.randn_like(p))
    model = model.to(getattr(torch, dtype))
    d = os.path.join(out, name)
    model.save_pretrained(d, safe_serialization=True)
    # Reference in float32 from the saved weights (bf16 weights widened exactly).
    ref = model_cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (1, SEQ), generator=g)
    with torch.no_grad():
        logits = ref(ids).logits[0].float().contiguous()
    with open(os.path.join(d, "logits.f32"), "wb") as f:
        f.write(logits.numpy().astype("<f4").tobytes())
    if name in BF16_CASES:
        half_model = model_cls.from_pretrained(d, dtype=torch.bfloat16, attn_implementation="eager").eval()
        with torch.no_grad():
            lb = half_model(ids).logits[0].float().contiguous()
        with open(os.path.join(d, "logits_bf16.f32"), "wb") as f:
            f.write(lb.numpy().astype("<f4").tobytes())
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump({"input_ids": ids[0].tolist(), "transformers": transformers.__version__}, f)
print("ok")
