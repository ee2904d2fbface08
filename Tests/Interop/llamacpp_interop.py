"""llama.cpp (llama-cpp-python) as the reference for quantized decoding.

usage: llamacpp_interop.py top1 GGUF IDS_JSON
  IDS_JSON: a list of token-id lists. For each list, the whole sequence is evaluated teacher-forced (one batch,
  logits for every position, 2 threads) and the argmax token of every position, its margin over the second, and
  the argmax with an f32 KV cache instead of the default f16 are printed:
  {"top1": [[...], ...], "margin": [[...], ...], "top1_f32_kv": [[...], ...], "version": "..."} on stdout.
usage: llamacpp_interop.py quantize SRC_GGUF DST_GGUF q8_0|q4_0|q4_k_m|q4_k_s
  llama.cpp's own quantizer (llama_model_quantize, re-quantizing allowed, default tensor-type rules) writes DST;
  the tensor types it chose are printed: {"types": {"Q4_0": 210, ...}, "token_embd": "Q8_0"}.
usage: llamacpp_interop.py dequantize GGUF OUT_DIR NAME...
  gguf-py's `gguf.quants.dequantize` of each named tensor (rows in Hugging Face order: attn_q/attn_k un-permuted as
  transformers' GGUF loader does), written as raw little-endian float32 to OUT_DIR/NAME.f32; prints
  {"types": {NAME: "Q4_K", ...}, "shapes": {NAME: [rows, cols]}}.
"""
import ctypes
import json
import sys

import llama_cpp
import llama_cpp.llama_cpp as llama_c
import numpy as np


GGML_TYPE_F32 = 0


def open_model(path, **kw):
    """llama_cpp.Llama on `path` without llama.cpp's extra CPU buffer types (weight repacking, AMX): built with
    GGML_NATIVE on an AMX machine, ggml's AMX matmul (ggml_backend_amx_mul_mat) segfaults in the first llama_decode
    (llama-cpp-python 0.3.36). Llama() exposes no option for it, so the model parameters' default is patched."""
    default = llama_c.llama_model_default_params

    def without_extra_buffers():
        params = default()
        params.use_extra_bufts = False
        return params

    llama_c.llama_model_default_params = without_extra_buffers
    try:
        return llama_cpp.Llama(model_path=path, **kw)
    finally:
        llama_c.llama_model_default_params = default


def last_logits(llm):
    """The logits of the last evaluated token (Llama.scores keeps rows only with logits_all)."""
    return np.ctypeslib.as_array(llama_c.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))


def evaluate(gguf, prompts, **kw):
    """Per prompt: the argmax token of every position and its margin (top-1 minus top-2 logit), teacher-forced in
    one batch."""
    longest = max(len(p) for p in prompts)
    llm = open_model(gguf, n_ctx=max(64, longest + 8), n_batch=max(64, longest + 8), n_threads=2, logits_all=True,
                     verbose=False, seed=0, **kw)
    top, margin = [], []
    for ids in prompts:
        llm.reset()
        llm.eval(ids)
        scores = np.asarray(llm.scores[: len(ids)])
        best = np.sort(scores, axis=1)[:, -2:]
        top.append([int(i) for i in scores.argmax(axis=1)])
        margin.append([float(m) for m in best[:, 1] - best[:, 0]])
    return top, margin


def top1(gguf, ids_path):
    """llama.cpp as a user runs it (f16 KV cache), and its top-1 tokens with an f32 KV cache: how often those two
    agree is llama.cpp's own agreement under a change of arithmetic that should not matter, the noise floor of the
    comparison (8-bit activations make every rounding difference grow to the quantization noise)."""
    with open(ids_path) as f:
        prompts = json.load(f)
    top, margin = evaluate(gguf, prompts)
    top_f32_kv, _ = evaluate(gguf, prompts, type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32)
    return {"top1": top, "margin": margin, "top1_f32_kv": top_f32_kv}


def quantize(src, dst, kind):
    ftypes = {"q8_0": llama_c.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_0": llama_c.LLAMA_FTYPE_MOSTLY_Q4_0,
              "q4_k_m": llama_c.LLAMA_FTYPE_MOSTLY_Q4_K_M, "q4_k_s": llama_c.LLAMA_FTYPE_MOSTLY_Q4_K_S}
    params = llama_c.llama_model_quantize_default_params()
    params.ftype = ftypes[kind]
    params.allow_requantize = True
    params.nthread = 2
    rc = llama_c.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f"llama_model_quantize({src} -> {dst}, {kind}) returned {rc}")
    import gguf

    types, embd = {}, None
    for t in gguf.GGUFReader(dst).tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
        if t.name == "token_embd.weight":
            embd = t.tensor_type.name
    return {"types": types, "token_embd": embd}


def dequantize(path, out_dir, names):
    import os

    import gguf

    reader = gguf.GGUFReader(path)
    heads = int(reader.fields["llama.attention.head_count"].parts[-1][0])
    kv_heads = int(reader.fields["llama.attention.head_count_kv"].parts[-1][0])
    tensors = {t.name: t for t in reader.tensors}
    types, shapes = {}, {}
    for name in names:
        t = tensors[name]
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape(int(t.shape[1]), int(t.shape[0]))
        for kind, n in (("attn_q.", heads), ("attn_k.", kv_heads)):
            if kind in name:  # transformers' reverse_permute
                w = w.reshape(n, w.shape[0] // n // 2, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)
        np.ascontiguousarray(w).astype("<f4").tofile(os.path.join(out_dir, name + ".f32"))
        types[name] = t.tensor_type.name
        shapes[name] = list(w.shape)
    return {"types": types, "shapes": shapes}


if __name__ == "__main__":
    if sys.argv[1] == "top1":
        print(json.dumps(top1(sys.argv[2], sys.argv[3]) | {"version": llama_cpp.__version__}))
    elif sys.argv[1] == "quantize":
        print(json.dumps(quantize(sys.argv[2], sys.argv[3], sys.argv[4])))
    elif sys.argv[1] == "dequantize":
        print(json.dumps(dequantize(sys.argv[2], sys.argv[3], sys.argv[4:])))
    else:
        sys.exit("unknown command " + sys.argv[1])
