"""LoRA interop checks against PEFT and mergekit (CPU, from PyPI). Prints one JSON object.

  peft BASE TUNED ADAPTER OURS_MERGED [ADAPTER OURS_MERGED ...]
      For each adapter: loads BASE with transformers, applies ADAPTER with peft.PeftModel.from_pretrained
      (recording every warning except library deprecation notices), merge_and_unload(), and compares the
      merged state dict with OURS_MERGED (our `longctx lora merge`) and with the fine-tune TUNED.
      Prints one JSON object per adapter, as a list.
  factors OURS MERGEKIT
      Compares two adapter directories: tensor names and dtypes, factors after aligning the sign of each
      rank-one component, B@A products, and the rank-relevant config fields.
  ties DIR
      Reads task tensors t*.safetensors (key "x") and weights from DIR/args.json, writes PEFT's
      merge_utils.ties and mergekit's generalized-task-arithmetic TIES results for comparison.
"""
import glob, io, json, logging, os, sys, warnings

import torch
from safetensors.torch import load_file


def load_dir(d):
    out = {}
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        out.update(load_file(f))
    return out


def peft_recorded(base, adapter, body, **load_kw):
    """Loads BASE with transformers (float32), applies ADAPTER with peft.PeftModel.from_pretrained and runs body(pm),
    recording every warning (except library deprecation notices) and PEFT's / transformers' log lines.
    Returns (body's result, the messages)."""
    import transformers
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, **load_kw)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    transformers.utils.logging.add_handler(handler)
    logging.getLogger("peft").addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = body(PeftModel.from_pretrained(model, adapter))
    transformers.utils.logging.remove_handler(handler)
    logging.getLogger("peft").removeHandler(handler)
    deprecations = (DeprecationWarning, FutureWarning, PendingDeprecationWarning)
    msgs = [str(w.message) for w in caught if not issubclass(w.category, deprecations)]
    msgs += [l for l in stream.getvalue().splitlines() if l.strip()]
    return result, msgs


def peft_check(base, adapter, ours_merged, tuned):
    """One adapter; returns the result dict."""
    merged, msgs = peft_recorded(base, adapter, lambda pm: pm.merge_and_unload())
    sd = {k: v.detach().float() for k, v in merged.state_dict().items()}
    ours = load_dir(ours_merged)
    ft = load_dir(tuned)
    b = load_dir(base)
    worst_vs_ours = 0.0
    worst_key = None
    errs = {}
    for k, v in ours.items():
        p = sd[k]
        d = (p - v.float()).abs().max().item() / max(v.float().abs().max().item(), 1e-30)
        if d > worst_vs_ours:
            worst_vs_ours, worst_key = d, k
        delta = ft[k].float() - b[k].float()
        if delta.norm() > 0:
            errs[k] = ((p - ft[k].float()).norm() / delta.norm()).item()
    return {"warnings": msgs, "missing_in_peft": [k for k in ours if k not in sd],
            "max_rel_diff_vs_ours": worst_vs_ours, "worst_key": worst_key, "rel_error_vs_tuned": errs}


def factors_check(ours_dir, mk_dir):
    a = load_file(os.path.join(ours_dir, "adapter_model.safetensors"))
    m = load_file(os.path.join(mk_dir, "adapter_model.safetensors"))
    ca = json.load(open(os.path.join(ours_dir, "adapter_config.json")))
    cm = json.load(open(os.path.join(mk_dir, "adapter_config.json")))
    res = {"keys_only_ours": sorted(set(a) - set(m)), "keys_only_mergekit": sorted(set(m) - set(a)),
           "dtype_mismatch": sorted(k for k in set(a) & set(m) if a[k].dtype != m[k].dtype)}
    worst_factor, worst_product, worst_saved, worst_key = 0.0, 0.0, 0.0, None
    for k in sorted(set(a) & set(m)):
        if ".lora_A" in k or ".lora_embedding_A" in k:
            kb = k.replace("lora_A", "lora_B").replace("lora_embedding_A", "lora_embedding_B")
            A, B, MA, MB = a[k].double(), a[kb].double(), m[k].double(), m[kb].double()
            if A.shape != MA.shape or B.shape != MB.shape:
                res.setdefault("shape_mismatch", []).append(k)
                continue
            s = torch.sign((A * MA).sum(dim=1))
            s[s == 0] = 1
            A2, B2 = A * s[:, None], B * s[None, :]
            for x, y, key in ((A2, MA, k), (B2, MB, kb)):
                d = ((x - y).abs().max() / y.abs().max()).item()
                if d > worst_factor:
                    worst_factor, worst_key = d, key
            worst_product = max(worst_product, ((B @ A - MB @ MA).abs().max() / (MB @ MA).abs().max()).item())
        elif ".lora_B" not in k and ".lora_embedding_B" not in k:
            worst_saved = max(worst_saved, (a[k].double() - m[k].double()).abs().max().item())
    res.update({"max_rel_factor_diff": worst_factor, "worst_key": worst_key, "max_rel_product_diff": worst_product,
                "max_abs_saved_diff": worst_saved})
    diffs = {}
    for key in ("r", "lora_alpha", "rank_pattern", "alpha_pattern", "use_rslora", "peft_type"):
        if ca.get(key) != cm.get(key):
            diffs[key] = [ca.get(key), cm.get(key)]
    for key in ("target_modules", "modules_to_save"):
        if set(ca.get(key) or []) != set(cm.get(key) or []):
            diffs[key] = [ca.get(key), cm.get(key)]
    res["config_diffs"] = diffs
    print(json.dumps(res))


def ties_check(d):
    from peft.utils.merge_utils import ties
    from mergekit.merge_methods.generalized_task_arithmetic import get_mask
    from mergekit.sparsify import magnitude

    args = json.load(open(os.path.join(d, "args.json")))
    ts = [load_file(os.path.join(d, f"t{i}.safetensors"))["x"] for i in range(len(args["weights"]))]
    w = torch.tensor(args["weights"], dtype=torch.float32)
    dens = args["density"]
    peft_out = ties(ts, w, dens, "total")
    # mergekit's GTA TIES core (generalized_task_arithmetic.py: sparsify, weight, get_mask "sum",
    # divide by Σ w·mask), run through mergekit's own functions on the same deltas.
    deltas = torch.stack([magnitude(t, dens) for t in ts])
    ww = w.clone()
    while deltas.dim() > ww.dim():
        ww = ww.unsqueeze(-1)
    deltas = deltas * ww
    mask = get_mask(deltas, method="sum", mask_dtype=deltas.dtype)
    mixed = (deltas * mask).sum(dim=0)
    div = (ww * mask).sum(dim=0)
    div[div == 0] = 1
    mk_out = mixed / div
    from safetensors.torch import save_file
    save_file({"peft": peft_out.contiguous(), "mergekit": mk_out.contiguous()}, os.path.join(d, "expected.safetensors"))
    print(json.dumps({"ok": True}))


if __name__ == "__main__":
    torch.manual_seed(0)
    mode = sys.argv[1]
    if mode == "peft":
        base, tuned, rest = sys.argv[2], sys.argv[3], sys.argv[4:]
        print(json.dumps({"results": [peft_check(base, rest[i], rest[i + 1], tuned) for i in range(0, len(rest), 2)]}))
    elif mode == "factors":
        factors_check(*sys.argv[2:4])
    elif mode == "ties":
        ties_check(sys.argv[2])
    else:
        sys.exit(f"unknown mode {mode}")
