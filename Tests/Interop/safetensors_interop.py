"""Interop checks between LongContext's safetensors code and the Python reference stack.

  write DIR  - write files with the `safetensors` package (plus the raw bytes each tensor must hold)
  check DIR  - load files LongContext wrote with `safetensors` (numpy and torch) and `torch`, compare
               with the raw bytes LongContext says it wrote, and load a sharded model in transformers
  bf16 DIR   - 10^6 float32 values (random bit patterns, subnormals, ties, +-inf, NaN) and torch's
               `.to(torch.bfloat16)` of them, for the Swift side to compare bit for bit
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file as np_load
from safetensors.torch import load_file, save_file


def raw(t: torch.Tensor) -> bytes:
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def tensors(seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(7, 13, generator=g) * 3
    x[0, 0] = float("inf")
    x[0, 1] = -0.0
    x[0, 2] = 1e-40  # subnormal
    return {
        "w.f32": x,
        "w.f16": (x / 4).to(torch.float16),
        "w.bf16": x.to(torch.bfloat16),
        "ids.i64": torch.arange(-5, 20, dtype=torch.int64) * 123456789,
        "empty.f32": torch.zeros(0, 4),
        "scalar.f32": torch.tensor(2.5),
    }


def write(out: str) -> None:
    os.makedirs(out + "/raw", exist_ok=True)
    single = tensors(0)
    save_file(single, out + "/single.safetensors", metadata={"format": "pt", "producer": "python"})
    manifest = {"single": {}, "sharded": {}}
    for k, v in single.items():
        open(f"{out}/raw/single-{k}.bin", "wb").write(raw(v))
        manifest["single"][k] = {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
    # A sharded checkpoint as save_pretrained lays it out.
    os.makedirs(out + "/sharded", exist_ok=True)
    parts = [{k: v for k, v in tensors(1).items() if k.endswith(s)} for s in ("f32", "f16", "bf16", "i64")]
    n = len(parts)
    weight_map, total = {}, 0
    for i, p in enumerate(parts, 1):
        name = f"model-{i:05d}-of-{n:05d}.safetensors"
        save_file(p, f"{out}/sharded/{name}", metadata={"format": "pt"})
        for k, v in p.items():
            weight_map[k] = name
            total += v.numel() * v.element_size()
            open(f"{out}/raw/sharded-{k}.bin", "wb").write(raw(v))
            manifest["sharded"][k] = {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
              open(out + "/sharded/model.safetensors.index.json", "w"), indent=2)
    json.dump(manifest, open(out + "/manifest.json", "w"), indent=2)


def check(d: str) -> None:
    man = json.load(open(d + "/manifest.json"))  # written by the Swift side: name -> raw file
    n_checked = 0
    for path, entries in man["files"].items():
        t = load_file(f"{d}/{path}")
        a = np_load(f"{d}/{path}") if not any(e["dtype"] == "BF16" for e in entries.values()) else None
        with safe_open(f"{d}/{path}", framework="pt") as f:
            md = f.metadata()
            assert md == man["metadata"].get(path), (path, md)
            assert sorted(f.keys()) == sorted(entries), (path, f.keys())
        for k, e in entries.items():
            want = open(f"{d}/{e['raw']}", "rb").read()
            assert list(t[k].shape) == e["shape"], (k, t[k].shape, e["shape"])
            assert raw(t[k]) == want, f"{path}:{k} bytes differ"
            if a is not None:
                assert a[k].tobytes() == want, f"{path}:{k} numpy bytes differ"
            if e.get("from_f32"):  # our bf16/f16 rounding must equal torch's cast of the f32 source
                src = t[e["from_f32"]]
                assert raw(src.to(t[k].dtype)) == want, f"{k}: our rounding differs from torch's"
            n_checked += 1
    # A sharded random model written by `longctx init-model` loads in transformers, values intact.
    if os.path.isdir(d + "/model"):
        from transformers import AutoModelForCausalLM
        m = AutoModelForCausalLM.from_pretrained(d + "/model", dtype=torch.bfloat16)
        sd = m.state_dict()
        idx = json.load(open(d + "/model/model.safetensors.index.json"))
        for k, shard in idx["weight_map"].items():
            ref = load_file(f"{d}/model/{shard}")[k]
            assert torch.equal(sd[k], ref), k
            n_checked += 1
    print(f"checked {n_checked} tensors")


def bf16(out: str) -> None:
    rng = np.random.default_rng(1234)
    n = 1_000_000
    bits = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
    # Deliberate coverage: subnormals, exact ties, values next to ties, overflow edge, specials.
    k = n // 10
    bits[:k] = rng.integers(0, 0x00800000, size=k, dtype=np.uint32) | (rng.integers(0, 2, size=k, dtype=np.uint32) << 31)
    ties = (rng.integers(0, 2**16, size=k, dtype=np.uint32) << 16) | 0x8000
    bits[k:2 * k] = ties
    bits[2 * k:3 * k] = ties + rng.choice(np.array([1, 0xFFFFFFFF], dtype=np.uint32), size=k)
    bits[3 * k:3 * k + 6] = [0x7F800000, 0xFF800000, 0x7FC00000, 0xFF812345, 0x7F7FFFFF, 0x7F7F8000]
    x = torch.from_numpy(bits.view(np.float32).copy())
    save_file({"x": x, "y": x.to(torch.bfloat16)}, out + "/bf16.safetensors")
    print(f"nan={int(torch.isnan(x).sum())} inf={int(torch.isinf(x).sum())} subnormal={k}")


if __name__ == "__main__":
    {"write": write, "check": check, "bf16": bf16}[sys.argv[1]](sys.argv[2])
