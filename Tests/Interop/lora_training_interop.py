"""References for LoRA training (Tests/TrainingTests/LoRATrainingTests.swift), from PEFT and torch autograd.

  grads OUT
      For each case: a random tiny Llama saved by transformers (OUT/<case>/base), a PEFT LoRA model on it with
      random A and B (so that both gradients are non-zero) saved by PEFT (OUT/<case>/adapter), one sequence through
      the PEFT model in float64 (eager attention), mean cross-entropy over positions with a target, and the gradient
      of every trainable parameter under its adapter key (OUT/<case>/grads.safetensors), the sequence and loss in
      OUT/<case>/reference.json.
  check BASE ADAPTER MERGED EFFECTIVE REFERENCE_JSON
      Loads BASE with transformers, applies ADAPTER with peft.PeftModel.from_pretrained recording every warning
      (except library deprecation notices) and PEFT's / transformers' log output, computes the loss of the sequence in
      REFERENCE_JSON through the unmerged PEFT model, then merge_and_unload() and compares every merged tensor with
      MERGED (our `longctx lora merge` output directory) and with EFFECTIVE (safetensors of our training weights
      W0 + s*B*A). Prints one JSON object.
"""
import json, os, sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

torch.set_num_threads(2)
VOCAB, SEQ = 300, 96
base_cfg = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5, initializer_range=0.08)

# name: (tied, target_modules, modules_to_save, r, alpha, rslora)
cases = {
    "untied-all": (False, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                   ["embed_tokens", "input_layernorm", "post_attention_layernorm", "model.norm"], 4, 8, False),
    "tied-attn-rslora": (True, ["q_proj", "k_proj", "v_proj", "o_proj"],
                         ["embed_tokens", "input_layernorm", "post_attention_layernorm", "model.norm"], 4, 8, True),
    "untied-qv": (False, ["q_proj", "v_proj"], None, 8, 16, False),
}


def adapter_key(param_name):
    """PEFT parameter name -> the key PEFT saves it under."""
    n = param_name.replace(".default", "")
    return n.replace(".modules_to_save", "")


def grads(out):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    for name, (tied, targets, to_save, r, alpha, rs) in cases.items():
        d = os.path.join(out, name)
        torch.manual_seed(sum(map(ord, name)))
        model = LlamaForCausalLM(LlamaConfig(tie_word_embeddings=tied, **base_cfg))
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n.endswith("norm.weight"):
                    p.copy_(1 + 0.2 * torch.randn_like(p))
        model.save_pretrained(os.path.join(d, "base"), safe_serialization=True)
        # float64: the reference carries no rounding of its own at our 1e-4 tolerance
        model = LlamaForCausalLM.from_pretrained(os.path.join(d, "base"), dtype=torch.float64, attn_implementation="eager")
        kw = dict(r=r, lora_alpha=alpha, target_modules=targets, modules_to_save=to_save, lora_dropout=0.0,
                  use_rslora=rs, task_type="CAUSAL_LM")
        if tied and to_save and "embed_tokens" in to_save:
            kw["ensure_weight_tying"] = True
        pm = get_peft_model(model, LoraConfig(**kw))
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if "lora_A" in n or "lora_B" in n:
                    p.copy_((0.2 * torch.randn(p.shape, generator=g)).double())
        pm.to(torch.float32).save_pretrained(os.path.join(d, "adapter"))
        pm.to(torch.float64)
        pm.train()
        ids = torch.randint(0, VOCAB, (1, SEQ), generator=g)
        targets_ = torch.cat([ids[0, 1:], torch.tensor([-1])])
        targets_[torch.randperm(SEQ, generator=g)[:10]] = -1
        logits = pm(input_ids=ids).logits[0]
        loss = F.cross_entropy(logits, targets_, ignore_index=-1)
        loss.backward()
        gr = {}
        for n, p in pm.named_parameters():
            if p.requires_grad:
                k = adapter_key(n)
                if k in gr:   # a tied copy: the same tensor under two names
                    continue
                gr[k] = p.grad.detach().float().contiguous().clone()
        save_file(gr, os.path.join(d, "grads.safetensors"))
        with open(os.path.join(d, "reference.json"), "w") as f:
            json.dump({"input_ids": ids[0].tolist(), "targets": targets_.tolist(), "loss": loss.item()}, f)
    print("ok")


def check(base, adapter, merged_dir, effective, ref_json):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from lora_interop import load_dir, peft_recorded

    with open(ref_json) as f:
        ref = json.load(f)

    def loss_then_merge(pm):
        pm.eval()
        with torch.no_grad():
            logits = pm(input_ids=torch.tensor([ref["input_ids"]])).logits[0]
        loss = F.cross_entropy(logits, torch.tensor(ref["targets"]), ignore_index=-1).item()
        return loss, pm.merge_and_unload()

    (loss, merged), msgs = peft_recorded(base, adapter, loss_then_merge, attn_implementation="eager")
    sd = {k: v.detach().float() for k, v in merged.state_dict().items()}
    if merged.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)

    def worst(ours):
        w, key = 0.0, None
        for k, v in ours.items():
            if k not in sd:
                continue
            d = (sd[k] - v.float()).abs().max().item() / max(v.float().abs().max().item(), 1e-30)
            if d > w:
                w, key = d, k
        return w, key

    ours_m = load_dir(merged_dir)
    ours_e = load_file(effective)
    b = load_dir(base)
    wm, km = worst(ours_m)
    we, ke = worst(ours_e)
    changed = [k for k in b if k in sd and not torch.equal(b[k].float(), sd[k])]
    print(json.dumps({"warnings": msgs, "worst_vs_merged": wm, "worst_vs_merged_key": km, "worst_vs_effective": we,
                      "worst_vs_effective_key": ke, "missing_in_peft": [k for k in ours_m if k not in sd],
                      "missing_in_ours": [k for k in sd if k not in ours_m], "changed_by_adapter": len(changed),
                      "loss": loss}))


if __name__ == "__main__":
    if sys.argv[1] == "grads":
        grads(sys.argv[2])
    elif sys.argv[1] == "check":
        check(*sys.argv[2:7])
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")
