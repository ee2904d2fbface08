"""RoPE interop: what Hugging Face transformers computes for model directories written or read by longctx.

Usage: rope_interop.py OUT.json DIR[:SEQ_LEN] ...   (works with transformers 4.5x and 5.x)

For each directory: loads config.json with AutoConfig (and, when weights are present, the whole model with
AutoModelForCausalLM), takes the model family's own rotary-embedding module, runs its forward pass on
positions [0, 1, 7, 1000, SEQ_LEN-1] (which also triggers transformers' dynamic / longrope update rules),
and records inv_freq (float32 bit patterns), attention_scaling, the standardised rope parameters, and the
cos/sin rows (float32 bit patterns). The Swift test compares all of it with longctx's own numbers.
"""
import importlib
import json
import struct
import sys

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM


def hex32(tensor):
    return ["0x%08x" % struct.unpack("<I", struct.pack("<f", float(v)))[0] for v in tensor.flatten().tolist()]


def rotary_module(config):
    """The model family's rotary-embedding class, instantiated from the config."""
    model_type = config.model_type
    module = importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    classes = [getattr(module, name) for name in dir(module) if name.endswith("RotaryEmbedding")]
    classes = [c for c in classes if isinstance(c, type) and issubclass(c, torch.nn.Module)]
    if not classes:
        raise SystemExit(f"no RotaryEmbedding class in {module.__name__}")
    # Prefer the plain text-model class (e.g. LlamaRotaryEmbedding over vision variants).
    classes.sort(key=lambda c: (("Vision" in c.__name__) or ("Text" in c.__name__), len(c.__name__)))
    return classes[0](config=config)


def main():
    out_path, specs = sys.argv[1], sys.argv[2:]
    results = {"__transformers_version__": transformers.__version__}
    for spec in specs:
        directory, _, seq = spec.partition(":")
        seq_len = int(seq) if seq else None
        config = AutoConfig.from_pretrained(directory)
        loaded_model = False
        try:
            import os
            has_weights = os.path.exists(os.path.join(directory, "model.safetensors")) or os.path.exists(
                os.path.join(directory, "model.safetensors.index.json"))
            if has_weights:
                model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
                emb = model.model.rotary_emb
                loaded_model = True
            else:
                emb = rotary_module(config)
        except Exception as error:  # report which directory failed
            raise SystemExit(f"{directory}: {type(error).__name__}: {error}")
        initial = emb.inv_freq.detach().clone()
        positions = [0, 1, 7, 1000]
        if seq_len:
            positions.append(seq_len - 1)
        position_ids = torch.tensor([positions], dtype=torch.long)
        x = torch.zeros(1, len(positions), 8, dtype=torch.float32)
        with torch.no_grad():
            cos, sin = emb(x, position_ids)
        rope = getattr(config, "rope_parameters", None)
        if rope is None:  # transformers 4.x: rope_scaling + top-level rope_theta
            rope = dict(config.rope_scaling or {})
            rope.setdefault("rope_type", rope.get("type", "default"))
            rope.setdefault("rope_theta", getattr(config, "rope_theta", None))
        results[spec] = {
            "loaded_model": loaded_model,
            "model_type": config.model_type,
            "rope_type": rope.get("rope_type"),
            "rope_theta": rope.get("rope_theta"),
            "rope_parameters": json.loads(json.dumps(rope, default=str)),
            "max_position_embeddings": config.max_position_embeddings,
            "initial_inv_freq_hex": hex32(initial),
            "inv_freq_hex": hex32(emb.inv_freq),
            "attention_scaling": float(emb.attention_scaling),
            "positions": positions,
            "cos_shape": list(cos.shape),
            "cos_hex": hex32(cos[0]),
            "sin_hex": hex32(sin[0]),
        }
    with open(out_path, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
