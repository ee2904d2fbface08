"""llama.cpp (llama-cpp-python) as the reference for quantized decoding.

usage: llamacpp_interop.py top1 GGUF IDS_JSON
  IDS_JSON: a list of token-id lists. For each list, the whole sequence is evaluated teacher-forced (one batch,
  logits for every position, 2 threads) and the argmax token of every position is printed:
  {"top1": [[...], ...], "version": "..."} on stdout.
"""
import json
import sys

import llama_cpp


def top1(gguf, ids_path):
    with open(ids_path) as f:
        prompts = json.load(f)
    longest = max(len(p) for p in prompts)
    llm = llama_cpp.Llama(model_path=gguf, n_ctx=max(64, longest + 8), n_batch=max(64, longest + 8),
                          n_threads=2, logits_all=True, verbose=False, seed=0)
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
