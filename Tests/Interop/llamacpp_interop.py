"""llama.cpp (llama-cpp-python) as the reference for quantized decoding.

usage: llamacpp_interop.py top1 GGUF IDS_JSON
  IDS_JSON: a list of token-id lists. For each list, the whole sequence is evaluated teacher-forced (one batch,
  logits for every position, 2 threads) and the argmax token of every position is printed:
  {"top1": [[...], ...], "version": "..."} on stdout.
"""
import json
import sys

import llama_cpp
import llama_cpp.llama_cpp as llama_c
import numpy as np


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


def top1(gguf, ids_path):
    with open(ids_path) as f:
        prompts = json.load(f)
    longest = max(len(p) for p in prompts)
    llm = open_model(gguf, n_ctx=max(64, longest + 8), n_batch=max(64, longest + 8), n_threads=2, logits_all=True,
                     verbose=False, seed=0)
    out = []
    for ids in prompts:
        llm.reset()
        llm.eval(ids)
        scores = llm.scores[: len(ids)]
        out.append([int(row.argmax()) for row in scores])
    return out


if __name__ == "__main__":
    if sys.argv[1] == "top1":
        print(json.dumps({"top1": top1(sys.argv[2], sys.argv[3]), "version": llama_cpp.__version__}))
    else:
        sys.exit("unknown command " + sys.argv[1])
