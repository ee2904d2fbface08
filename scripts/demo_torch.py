#!/usr/bin/env python3
"""Diagnosis of the demo's act two in PyTorch (issue 15): the same transformers LlamaForCausalLM, the demo's
passkey prompts, the trainer's recipe (AdamW, warmup + cosine to 10 %, answer-only loss), varied one thing at a
time. Diagnosis only: the shipped base and extension are trained by `longctx train` (`longctx demo`).

  scripts/demo_torch.py base --out DIR [--layout reset|offset|pack] ...   train a base from scratch
  scripts/demo_torch.py extend --model DIR --corpus JSONL [--rope keep|theta|yarn] ...   progressive stages
  scripts/demo_torch.py score --model DIR [--yarn 8]                        the grid (lengths 256…2K)
  scripts/demo_torch.py probe --model DIR [--lengths 256,2048]              where each answer digit comes from

Prompts are built exactly as `Passkey.spec` (Sources/Evaluation/Probes.swift) builds the landmark layout (the demo
now trains and grids the shuffled layout; this script diagnosed why the landmark base could not be extended): filler units fitted to
the length in tokens, depth = filler fraction before the key line, keys of 5 distinct digits. Prints the CPU and
the load beside the numbers.
"""
import argparse
import json
import math
import os
import random
import sys
import time

import torch
from tokenizers import Tokenizer
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

TASK = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
        "I will quiz you about the important information there.")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
QUESTION = "What is the pass key? The pass key is"


def key_line(k):
    return f"The pass key is {k}. Remember it. {k} is the pass key."


def distinct_key(rng, count=5):
    digits = list(range(10))
    rng.shuffle(digits)
    if digits[0] == 0:
        digits[0], digits[count] = digits[count], digits[0]
    return int("".join(map(str, digits[:count])))


def prompt(units, depth, key):
    before = int(math.floor(units * depth / 100 + 0.5))  # Swift's rounded(): halves away from zero
    prefix = " ".join([FILLER] * before)
    suffix = " ".join([FILLER] * (units - before))
    return "\n".join([TASK, prefix, key_line(key), suffix, QUESTION])


class Text:
    def __init__(self, model_dir):
        self.tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.eos = 0

    def ids(self, s):
        return self.tok.encode(s).ids

    def units_for(self, length):
        """Most filler units whose prompt fits `length` tokens (the grid's prompt length)."""
        n = 0
        while len(self.ids(prompt(n + 1, 50, 98765))) <= length:
            n += 1
        return n

    def record(self, p, c):
        """Tokens and the prompt's length (loss from the completion's first token, EOS included)."""
        head = self.ids(p)
        return head + self.ids(c) + [self.eos], len(head)


def synth_records(text, rng, count, lo, hi):
    """Prompts of uniform filler count whose tokens (with answer and EOS) fit in [lo, hi]."""
    unit = 25
    out = []
    base_len = len(text.ids(prompt(0, 0, 98765))) + 7
    lo_units = max(0, (lo - base_len) // unit)
    hi_units = max(0, (hi - base_len) // unit)
    for _ in range(count):
        k = distinct_key(rng)
        p = prompt(rng.randint(lo_units, hi_units), rng.uniform(0, 100), k)
        out.append(text.record(p, f" {k}"))
    return out


def load_records(text, path):
    out = []
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                out.append(text.record(r["prompt"], r["completion"]))
    return out


def set_rope(model, theta=None, yarn=None, original=256, beta_fast=32.0, beta_slow=1.0, attention_factor=None):
    cfg = model.config
    params = {"rope_type": "default", "rope_theta": float(theta or cfg.rope_parameters["rope_theta"])}
    if yarn:
        params.update(rope_type="yarn", factor=float(yarn), original_max_position_embeddings=original,
                      beta_fast=beta_fast, beta_slow=beta_slow)
        if attention_factor is not None:
            params["attention_factor"] = attention_factor
    cfg.rope_parameters = params
    model.model.rotary_emb = LlamaRotaryEmbedding(cfg)


def batch_tensors(rows, length, layout, rng, doc_mask=True):
    """rows: list of lists of (tokens, prompt_len). Returns input ids, labels, positions and a 4D additive mask."""
    b = len(rows)
    ids = torch.zeros(b, length, dtype=torch.long)
    labels = torch.full((b, length), -100, dtype=torch.long)
    pos = torch.zeros(b, length, dtype=torch.long)
    doc = torch.full((b, length), -1, dtype=torch.long)
    for i, docs in enumerate(rows):
        at = 0
        if layout == "offset":  # one document at a random absolute position
            toks = docs[0][0]
            start = rng.randint(0, length - len(toks))
            pos[i, :len(toks)] = torch.arange(start, start + len(toks))
        for d, (toks, head) in enumerate(docs):
            n = len(toks)
            ids[i, at:at + n] = torch.tensor(toks)
            labels[i, at + head - 1:at + n - 1] = torch.tensor(toks[head:])
            if layout == "reset":
                pos[i, at:at + n] = torch.arange(n)
            elif layout == "pack":
                pos[i, at:at + n] = torch.arange(at, at + n)
            doc[i, at:at + n] = d
            at += n
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool))
    same = (doc[:, :, None] == doc[:, None, :]) & (doc[:, :, None] >= 0) if doc_mask else torch.ones(b, length, length, dtype=torch.bool)
    allowed = causal[None] & same
    allowed |= torch.eye(length, dtype=torch.bool)[None]  # padding rows attend to themselves
    mask = torch.zeros(b, 1, length, length)
    mask.masked_fill_(~allowed[:, None], torch.finfo(torch.float32).min)
    return ids, labels, pos, mask


def make_rows(records, rng, tokens_per_step, length, layout):
    """Documents drawn uniformly until the step's tokens are spent, packed without splitting into rows of
    `length` (reset/pack), or one per row (offset)."""
    rows, cur, used, spent = [], [], 0, 0
    while spent < tokens_per_step:
        toks, head = records[rng.randrange(len(records))]
        if len(toks) > length:
            continue
        spent += len(toks)
        if layout == "offset":
            rows.append([(toks, head)])
            continue
        if used + len(toks) > length:
            rows.append(cur)
            cur, used = [], 0
        cur.append((toks, head))
        used += len(toks)
    if cur:
        rows.append(cur)
    return rows


def lr_at(step, steps, peak, warmup, min_ratio=0.1):
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def train_stage(model, records, rng, steps, peak, warmup, tokens_per_step, length, layout, wd=0.1,
                betas=(0.9, 0.95), doc_mask=True, log_every=50, name="stage"):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}],
                            lr=peak, betas=betas, eps=1e-8)
    losses = []
    t0 = time.time()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, peak, warmup)
        rows = make_rows(records, rng, tokens_per_step, length, layout)
        width = length if layout != "reset" else max(sum(len(t) for t, _ in r) for r in rows)
        ids, labels, pos, mask = batch_tensors(rows, width, layout, rng, doc_mask)
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos)
        logits = out.logits.float()
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % log_every == 0 or step == 0:
            print(f"  {name} step {step + 1}/{steps} loss {loss.item():.4f} (mean last {min(log_every, len(losses))}: "
                  f"{sum(losses[-log_every:]) / len(losses[-log_every:]):.4f}) {time.time() - t0:.0f} s", flush=True)
    return losses


@torch.no_grad()
def score(model, text, lengths, prompts, seed, depths=5):
    model.eval()
    res = {}
    for length in lengths:
        units = text.units_for(length)
        rng = random.Random(f"{seed}-{length}")
        batch, keys = [], []
        for i in range(prompts):
            k = distinct_key(rng)
            depth = (i % depths) * 100 / max(1, depths - 1)
            batch.append(text.ids(prompt(units, depth, k)))
            keys.append(k)
        hits = 0
        for n in sorted({len(b) for b in batch}):  # the key line's position can move a token
            group = [(b, k) for b, k in zip(batch, keys) if len(b) == n]
            ids = torch.tensor([b for b, _ in group])
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=7, do_sample=False,
                                 pad_token_id=0, eos_token_id=None)
            for (_, k), row in zip(group, out[:, n:].tolist()):
                s = "".join(text.tok.id_to_token(t) for t in row).replace("▁", "")
                hits += s.startswith(str(k))
        res[length] = hits / prompts
    model.train()
    return res


@torch.no_grad()
def probe(model, text, lengths, prompts, seed):
    """Teacher-forced accuracy of each answer digit per length and depth, and the attention mass that each layer's
    most attentive head puts on the key line from the position predicting that digit: shows which layer retrieves
    the key and whether it still does beyond the trained length."""
    model.eval()
    layers = model.config.num_hidden_layers
    for length in lengths:
        units = text.units_for(length)
        rng = random.Random(f"{seed}-probe-{length}")
        for depth in (0, 25, 50, 75, 100):
            hits = [0] * 5
            mass = [[0.0] * layers for _ in range(5)]
            for _ in range(prompts):
                k = distinct_key(rng)
                ids = text.ids(prompt(units, depth, k))
                answer = text.ids(str(k))  # "▁" then the five digits
                line = text.ids(key_line(k))
                start = next(j for j in range(len(ids)) if ids[j:j + len(line)] == line)
                out = model(torch.tensor([ids + answer]), output_attentions=True)
                for d in range(5):
                    pos = len(ids) + d  # predicts answer[d + 1]
                    hits[d] += int(out.logits[0, pos].argmax().item() == answer[d + 1])
                    for layer in range(layers):
                        att = out.attentions[layer][0, :, pos, start:start + len(line)].sum(-1).max().item()
                        mass[d][layer] += att / prompts
            cells = " ".join(f"{h}/{prompts}" for h in hits)
            masses = " ".join("/".join(f"{m:.2f}" for m in row) for row in mass)
            print(f"{length} depth {depth:3d}%: digits right {cells}; key-line mass per layer {masses}", flush=True)
    model.train()


def header():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"# cpu: {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}; load {os.getloadavg()}",
          flush=True)


def fmt(res):
    return "  ".join(f"{k}: {round(v * 100)} %" for k, v in res.items())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["base", "extend", "score", "probe"])
    ap.add_argument("--model", help="model directory (extend, score; base: its config and tokenizer)")
    ap.add_argument("--out")
    ap.add_argument("--corpus", help="the demo's JSONL records (else synthesised)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--layout", choices=["reset", "offset", "pack"], default="reset")
    ap.add_argument("--no-doc-mask", action="store_true")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--tokens", type=int, default=5120, help="tokens a step (base)")
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--min-len", type=int, default=32)
    ap.add_argument("--layers", type=int)
    ap.add_argument("--theta", type=float)
    ap.add_argument("--stages", default="512,1024,2048")
    ap.add_argument("--stage-steps", type=int, default=40)
    ap.add_argument("--stage-tokens", default="8192,16384,16384")
    ap.add_argument("--stage-warmup", type=int, default=8)
    ap.add_argument("--rope", default="keep", help="extend: keep | theta:T1,T2,T3 | yarn")
    ap.add_argument("--yarn", type=float, help="score with YaRN of this factor (original 256)")
    ap.add_argument("--beta-fast", type=float, default=32.0)
    ap.add_argument("--attention-factor", type=float)
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--lengths", default="256,512,1024,2048")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    header()
    text = Text(a.model)
    rng = random.Random(a.seed)
    lengths = [int(x) for x in a.lengths.split(",")]
    if a.cmd == "base":
        cfg = json.load(open(os.path.join(a.model, "config.json")))
        if a.layers:
            cfg["num_hidden_layers"] = a.layers
        if a.theta:
            cfg["rope_theta"] = a.theta
            cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": a.theta}
        config = LlamaConfig(**cfg)
        config._attn_implementation = "eager"
        model = LlamaForCausalLM(config)
        records = load_records(text, a.corpus) if a.corpus else synth_records(text, rng, 20000, a.min_len, a.length)
        print(f"base: {len(records)} records, {a.layout}, doc mask {not a.no_doc_mask}, {a.steps} steps", flush=True)
        t0 = time.time()
        train_stage(model, records, rng, a.steps, a.lr, a.warmup, a.tokens, a.length, a.layout, wd=a.wd,
                    doc_mask=not a.no_doc_mask, log_every=100, name="base")
        print(f"trained in {time.time() - t0:.0f} s", flush=True)
        model.save_pretrained(a.out)
        for f in ["tokenizer.json", "tokenizer_config.json"]:
            os.system(f"cp {os.path.join(a.model, f)} {a.out}/")
        print("base:", fmt(score(model, text, lengths, a.prompts, a.seed)), flush=True)
        set_rope(model, yarn=8, beta_fast=a.beta_fast, attention_factor=a.attention_factor)
        print("yarn x8:", fmt(score(model, text, lengths, a.prompts, a.seed)), flush=True)
        return
    model = LlamaForCausalLM.from_pretrained(a.model, attn_implementation="eager", torch_dtype=torch.float32)
    if a.cmd == "probe":
        model.config._attn_implementation = "eager"
        probe(model, text, lengths, a.prompts, a.seed)
        return
    if a.cmd == "score":
        if a.theta:
            set_rope(model, theta=a.theta)
        if a.yarn:
            set_rope(model, yarn=a.yarn, beta_fast=a.beta_fast, attention_factor=a.attention_factor)
        print(("yarn x%g" % a.yarn if a.yarn else "as is") + ":", fmt(score(model, text, lengths, a.prompts, a.seed)))
        return
    records = load_records(text, a.corpus) if a.corpus else synth_records(text, rng, 4000, a.min_len, int(a.stages.split(",")[-1]))
    stages = [int(x) for x in a.stages.split(",")]
    tokens = [int(x) for x in a.stage_tokens.split(",")]
    thetas = a.rope.split(":", 1)[1].split(",") if a.rope.startswith("theta:") else None
    t0 = time.time()
    for i, length in enumerate(stages):
        if thetas:
            set_rope(model, theta=float(thetas[i]))
        elif a.rope == "yarn":
            set_rope(model, yarn=length / 256, beta_fast=a.beta_fast, attention_factor=a.attention_factor)
        train_stage(model, records, rng, a.stage_steps, a.lr, min(a.stage_warmup, a.stage_steps),
                    tokens[min(i, len(tokens) - 1)], length, a.layout, wd=a.wd, doc_mask=not a.no_doc_mask,
                    log_every=10, name=f"{length}")
    print(f"extended in {time.time() - t0:.0f} s", flush=True)
    print("extended:", fmt(score(model, text, lengths, a.prompts, a.seed)), flush=True)
    if a.out:
        model.save_pretrained(a.out)


if __name__ == "__main__":
    main()
