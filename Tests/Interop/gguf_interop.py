"""GGUF interop references for Tests/GGUFTests (gguf-py, transformers, tokenizers).

  gguf_interop.py fixture OUT          tiny GGUF written by gguf.GGUFWriter: every metadata type, random blocks of
                                       every supported tensor type; OUT/expected/NAME.f32 = gguf.quants.dequantize
  gguf_interop.py weights GGUF DIR     compare DIR/model.safetensors with gguf.quants.dequantize + transformers'
                                       GGUF loader permutation (LlamaTensorProcessor._reverse_permute_weights)
  gguf_interop.py tokenizer GGUF DIR N [OUT]  `tokenizers` on DIR/tokenizer.json vs a llama.cpp-style reference BPE built
                                       from the GGUF vocabulary (special-token split, pre-tokenizer regexes, merges)
                                       on N generated strings, plus the ChatML prompt ids (OUT: strings + ids)
  gguf_interop.py generate DIR         transformers (f32) greedy answer to the ChatML prompt; logits for prompts
"""
import json
import os
import sys

import numpy as np

CHATML = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


def field_value(reader, key):
    import gguf
    f = reader.fields.get(key)
    if f is None:
        return None
    t = f.types[0]
    if t == gguf.GGUFValueType.ARRAY:
        et = f.types[1] if len(f.types) > 1 else None
        if et == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    if t == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]].tolist()[0]


# ---------------------------------------------------------------------------------------------- fixture

def fixture(out):
    import gguf
    from gguf import GGMLQuantizationType as T
    rng = np.random.default_rng(1234)
    os.makedirs(os.path.join(out, "expected"), exist_ok=True)
    w = gguf.GGUFWriter(os.path.join(out, "tiny.gguf"), "llama")
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.1)
    w.add_uint64("test.u64", 18000000000000000000)
    w.add_int64("test.i64", -9000000000000000000)
    w.add_float64("test.f64", 0.1)
    w.add_bool("test.bool", True)
    w.add_string("test.str", "héllo ✓")
    w.add_array("test.arr_i32", [1, -2, 3])
    w.add_array("test.arr_str", ["a", "bc", ""])
    w.add_array("test.arr_f32", [0.5, -1.25])

    def half_bytes(n, lo, hi):
        return rng.uniform(lo, hi, n).astype(np.float16).view(np.uint8).reshape(n, 2)

    def blocks(qtype, nblocks):
        bs, ts = gguf.GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(nblocks, ts), dtype=np.uint8)
        # sane scales: overwrite the f16 fields with finite values
        if qtype in (T.Q8_0, T.Q4_0, T.Q5_0):
            raw[:, 0:2] = half_bytes(nblocks, -0.1, 0.1)
        elif qtype == T.Q4_1:
            raw[:, 0:2] = half_bytes(nblocks, 0.0, 0.1)
            raw[:, 2:4] = half_bytes(nblocks, -1, 1)
        elif qtype in (T.Q4_K, T.Q5_K):
            raw[:, 0:2] = half_bytes(nblocks, 0.0, 0.01)
            raw[:, 2:4] = half_bytes(nblocks, 0.0, 0.01)
        elif qtype == T.Q6_K:
            raw[:, 208:210] = half_bytes(nblocks, -0.01, 0.01)
        return raw

    entries = []
    for name, qtype, rows in [("q8_0", T.Q8_0, 4), ("q4_0", T.Q4_0, 4), ("q4_1", T.Q4_1, 4), ("q5_0", T.Q5_0, 4),
                              ("q4_k", T.Q4_K, 8), ("q5_k", T.Q5_K, 8), ("q6_k", T.Q6_K, 8)]:
        bs, ts = gguf.GGML_QUANT_SIZES[qtype]
        cols = 2 * 256  # a whole number of blocks for every type
        raw = blocks(qtype, rows * cols // bs).reshape(rows, cols // bs * ts)
        entries.append((name, raw, qtype))
    x = rng.standard_normal((3, 8)).astype(np.float32)
    entries.append(("f32", x, T.F32))
    entries.append(("f16", x.astype(np.float16), T.F16))
    bf = (x.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(3, 16)
    entries.append(("bf16", bf, T.BF16))
    entries.append(("vec", rng.standard_normal(5).astype(np.float32), T.F32))
    for name, data, qtype in entries:
        if qtype in (T.F32, T.F16):
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    r = gguf.GGUFReader(os.path.join(out, "tiny.gguf"))
    info = {}
    for t in r.tensors:
        deq = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        deq.tofile(os.path.join(out, "expected", t.name + ".f32"))
        info[t.name] = {"type": t.tensor_type.name, "shape": list(deq.shape), "ne": [int(v) for v in t.shape]}
    json.dump({"tensors": info, "data_offset": int(r.data_offset), "alignment": int(r.alignment)},
              open(os.path.join(out, "expected.json"), "w"), indent=1)


# ---------------------------------------------------------------------------------------------- weights

def weights(gguf_path, directory):
    import gguf
    from safetensors.numpy import load_file
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor
    r = gguf.GGUFReader(gguf_path)
    heads = field_value(r, "llama.attention.head_count")
    kv = field_value(r, "llama.attention.head_count_kv")
    proc = LlamaTensorProcessor(config={"num_attention_heads": heads, "num_key_value_heads": kv})
    ours = load_file(os.path.join(directory, "model.safetensors"))
    names = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    layer = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
             "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    worst = 0.0
    compared = 0
    for t in r.tensors:
        if t.name in names:
            hf = names[t.name]
        else:
            _, i, kind, suffix = t.name.split(".")
            hf = f"model.layers.{i}.{layer[kind]}.{suffix}"
        ref = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        ref = proc.process(ref, t.name).weights
        got = ours[hf]
        assert got.shape == ref.shape, (hf, got.shape, ref.shape)
        if got.dtype == np.float32:
            d = float(np.max(np.abs(got - ref))) if ref.size else 0.0
        else:
            d = float(np.max(np.abs(got.astype(np.float32) - ref)))
        worst = max(worst, d)
        compared += 1
    print(json.dumps({"compared": compared, "ours": len(ours), "max_abs_diff": worst}))


# ---------------------------------------------------------------------------------------------- tokenizer

GPT2_RE = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PRE_REGEXES = {
    "smollm": [r"\p{N}", GPT2_RE],
    "gpt2": [GPT2_RE],
    "llama-bpe": [r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
    "qwen2": [r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
}


def byte_encoder():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


class ReferenceBPE:
    """llama.cpp's BPE tokenisation (src/llama-vocab.cpp) from GGUF data: special tokens (control and
    user-defined) partitioned out first, longest first; each remaining fragment split by the
    pre-tokenizer's regexes in sequence (matches and the text between them both kept); byte-to-unicode
    mapping; lowest-rank merge first (leftmost on ties); ignore_merges for llama-bpe."""

    def __init__(self, gguf_path):
        import gguf
        import regex
        r = gguf.GGUFReader(gguf_path)
        self.tokens = field_value(r, "tokenizer.ggml.tokens")
        self.types = field_value(r, "tokenizer.ggml.token_type")
        merges = field_value(r, "tokenizer.ggml.merges")
        self.pre = field_value(r, "tokenizer.ggml.pre") or "gpt2"
        self.vocab = {t: i for i, t in enumerate(self.tokens)}
        self.ranks = {tuple(m.split(" ", 1)): i for i, m in enumerate(merges)}
        self.special = sorted([t for t, ty in zip(self.tokens, self.types) if ty in (3, 4)], key=len, reverse=True)
        key = {"starcoder": "smollm", "refact": "smollm", "command-r": "smollm", "olmo": "smollm", "llama3": "llama-bpe"}
        self.regexes = [regex.compile(p) for p in PRE_REGEXES[key.get(self.pre, self.pre)]]
        self.ignore_merges = self.pre in ("llama-bpe", "llama3")
        self.be = byte_encoder()
        self.cache = {}

    def split_special(self, text):
        parts = [(text, False)]
        for s in self.special:
            out = []
            for frag, is_special in parts:
                if is_special or s not in frag:
                    out.append((frag, is_special))
                    continue
                pieces = frag.split(s)
                for k, p in enumerate(pieces):
                    if p:
                        out.append((p, False))
                    if k < len(pieces) - 1:
                        out.append((s, True))
            parts = out
        return parts

    def pretokenize(self, text):
        words = [text]
        for rx in self.regexes:
            out = []
            for w in words:
                pos = 0
                for m in rx.finditer(w):
                    if m.start() > pos:
                        out.append(w[pos:m.start()])
                    if m.end() > m.start():
                        out.append(m.group())
                    pos = m.end()
                if pos < len(w):
                    out.append(w[pos:])
            words = out
        return words

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        if self.ignore_merges and word in self.vocab:
            return [self.vocab[word]]
        syms = list(word)
        while len(syms) > 1:
            best = None
            for i in range(len(syms) - 1):
                rk = self.ranks.get((syms[i], syms[i + 1]))
                if rk is not None and (best is None or rk < best[0]):
                    best = (rk, i)
            if best is None:
                break
            i = best[1]
            syms = syms[:i] + [syms[i] + syms[i + 1]] + syms[i + 2:]
        ids = [self.vocab[s] for s in syms]
        self.cache[word] = ids
        return ids

    def encode(self, text):
        ids = []
        for frag, is_special in self.split_special(text):
            if is_special:
                ids.append(self.vocab[frag])
                continue
            if self.pre == "qwen2":
                # HF's Qwen2 tokenizer.json normalises with NFC (llama.cpp does not); we follow HF.
                import unicodedata
                frag = unicodedata.normalize("NFC", frag)
            for w in self.pretokenize(frag):
                ids += self.bpe("".join(self.be[b] for b in w.encode("utf-8")))
        return ids


def test_strings(n, specials):
    rng = np.random.default_rng(7)
    words = ["the", "The", "capital", "France", "Paris", "hello", "world", "don't", "it's", "we're", "I'll", "you've",
             "SmolLM", "tokenizer", "naïve", "café", "Straße", "日本語", "中文", "한국어", "Привет", "مرحبا", "😀", "👍🏽",
             "∑", "π", "x²", "1,000", "3.14", "2024", "12345678", "0x1F", "def", "return", "{", "}", "()", "==", "->",
             "print(\"hi\")", "#include", "</s>", "\\n", "%", "$", "...", "—", "–", "‘quoted’", "«guillemets»",
             "ǅ", "ﬁ", "Ω", "ß", "İ", "é", "ñ", "ü"]
    spaces = [" ", "  ", "   ", "\t", "\n", "\n\n", " \n", "\r\n", "\u00a0", "\u3000", "    "]
    out = ["", " ", "  ", "\n", "1", "12", "123", "In 2024, it's 12345 tokens", CHATML]
    while len(out) < n:
        k = int(rng.integers(1, 12))
        parts = []
        for _ in range(k):
            c = rng.random()
            if c < 0.45:
                parts.append(words[int(rng.integers(len(words)))])
            elif c < 0.6:
                parts.append("".join(str(int(d)) for d in rng.integers(0, 10, int(rng.integers(1, 9)))))
            elif c < 0.85:
                parts.append(spaces[int(rng.integers(len(spaces)))])
            elif c < 0.93:
                parts.append(specials[int(rng.integers(len(specials)))])
            else:
                parts.append("".join(chr(int(cp)) for cp in rng.integers(0x20, 0x3000, int(rng.integers(1, 4)))))
        sep = "" if rng.random() < 0.3 else " "
        out.append(sep.join(parts))
    return out[:n]


def tokenizer(gguf_path, directory, n, strings_out=None):
    from tokenizers import Tokenizer
    ref = ReferenceBPE(gguf_path)
    tok = Tokenizer.from_file(os.path.join(directory, "tokenizer.json"))
    specials = [t for t, ty in zip(ref.tokens, ref.types) if ty == 3][:6] or ["<s>"]
    strings = test_strings(n, specials)
    mismatches = []
    for s in strings:
        a = tok.encode(s, add_special_tokens=False).ids
        b = ref.encode(s)
        if a != b:
            mismatches.append({"text": s, "tokenizers": a, "reference": b})
    prompt = tok.encode(CHATML, add_special_tokens=False).ids
    # decode round trip through the ByteLevel decoder
    decoded_ok = sum(tok.decode(tok.encode(s, add_special_tokens=False).ids, skip_special_tokens=False) == s
                     for s in strings)
    if strings_out:
        json.dump({"strings": strings, "ids": [ref.encode(s) for s in strings]}, open(strings_out, "w"))
    print(json.dumps({"count": len(strings), "mismatches": len(mismatches), "first_mismatches": mismatches[:3],
                      "prompt_ids": prompt, "reference_prompt_ids": ref.encode(CHATML), "decoded_ok": decoded_ok}))


# ---------------------------------------------------------------------------------------------- generate

PROMPTS = [CHATML, "The quick brown fox", "In 2024, it's 12345 tokens", "def fib(n):\n    return"]


def generate(directory, logits_out=None):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    model.eval()
    ids = tok(CHATML, add_special_tokens=False, return_tensors="pt").input_ids
    templated = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, tokenize=False)
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, do_sample=False)
    new = out[0, ids.shape[1]:].tolist()
    result = {"prompt_ids": ids[0].tolist(), "new_ids": new,
              "answer": tok.decode(new, skip_special_tokens=True),
              "template_has_default_system": templated.startswith("<|im_start|>system\n")}
    if logits_out:
        rows = {}
        with torch.no_grad():
            for p in PROMPTS:
                pid = tok(p, add_special_tokens=False, return_tensors="pt").input_ids
                rows[p] = {"ids": pid[0].tolist(), "logits": model(pid).logits[0].float().numpy().tolist()}
        json.dump(rows, open(logits_out, "w"))
    print(json.dumps(result))


# ---------------------------------------------------------------------------------------------- round trip

def llama_cpp_permute(w, n_head, n_head_kv):
    """convert_hf_to_gguf.py LlamaModel.permute (HF half-split rows -> GGUF interleaved pairs)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def roundtrip(out):
    """A random tiny HF Llama (transformers) converted to GGUF the way llama.cpp's converter does
    (tensor names, Q/K permutation, reversed ne, rope keys), with a toy byte-level BPE vocabulary;
    one GGUF per pre-tokenizer name. OUT/hf is the original directory."""
    import gguf
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    be = byte_encoder()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    base = [be[b] for b in range(256)]
    merge_pairs = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"), ("o", "n"),
                   ("Ġ", "Ġ"), ("ĠĠ", "ĠĠ"), ("1", "2"), ("12", "3"), ("a", "n"), ("an", "d"), ("Ġ", "c"), ("Ġc", "a")]
    tokens = specials + base + ["".join(m) for m in merge_pairs]
    types = [3] * len(specials) + [1] * (len(tokens) - len(specials))
    cfg = LlamaConfig(vocab_size=len(tokens), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      rope_parameters={"rope_type": "yarn", "rope_theta": 50000.0, "factor": 4.0,
                                       "original_max_position_embeddings": 64},
                      rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(os.path.join(out, "hf"))
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for pre in ["llama-bpe", "qwen2", "gpt2", "smollm"]:
        w = gguf.GGUFWriter(os.path.join(out, f"tiny-{pre}.gguf"), "llama")
        w.add_block_count(2); w.add_context_length(256); w.add_embedding_length(64); w.add_feed_forward_length(96)
        w.add_head_count(4); w.add_head_count_kv(2); w.add_rope_freq_base(50000.0); w.add_layer_norm_rms_eps(1e-6)
        w.add_rope_dimension_count(16)
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN); w.add_rope_scaling_factor(4.0)
        w.add_rope_scaling_orig_ctx_len(64)
        w.add_tokenizer_model("gpt2"); w.add_tokenizer_pre(pre)
        w.add_token_list(tokens); w.add_token_types(types)
        w.add_token_merges([f"{a} {b}" for a, b in merge_pairs])
        w.add_bos_token_id(1); w.add_eos_token_id(2); w.add_pad_token_id(0)
        w.add_add_bos_token(pre == "llama-bpe")
        w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")
        for k, v in sd.items():
            if k == "model.embed_tokens.weight": name = "token_embd.weight"
            elif k == "model.norm.weight": name = "output_norm.weight"
            elif k == "lm_head.weight": name = "output.weight"
            else:
                parts = k.split(".")
                name = f"blk.{parts[2]}.{layer['.'.join(parts[3:-1])]}.{parts[-1]}"
            if name.endswith("attn_q.weight"): v = llama_cpp_permute(v, 4, 4)
            if name.endswith("attn_k.weight"): v = llama_cpp_permute(v, 4, 2)
            if name.endswith("ffn_up.weight"):
                w.add_tensor(name, v.astype(np.float16))  # one F16 tensor: the import must widen it exactly
            else:
                w.add_tensor(name, np.ascontiguousarray(v))
        w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


def compare(original, imported):
    """Weights (exact, but ffn_up went through f16) and logits of the imported directory vs the original."""
    import torch
    from safetensors.numpy import load_file
    from transformers import AutoConfig, AutoModelForCausalLM
    a = load_file(os.path.join(original, "model.safetensors"))
    b = load_file(os.path.join(imported, "model.safetensors"))
    diffs = {}
    for k, v in a.items():
        ref = v.astype(np.float16).astype(np.float32) if "up_proj" in k else v
        diffs[k] = float(np.max(np.abs(b[k].astype(np.float32) - ref)))
    cfg = AutoConfig.from_pretrained(imported)
    m1 = AutoModelForCausalLM.from_pretrained(original, dtype=torch.float32).eval()
    m2 = AutoModelForCausalLM.from_pretrained(imported, dtype=torch.float32).eval()
    with torch.no_grad():
        for n, p in m1.named_parameters():
            if "up_proj" in n:
                p.copy_(p.half().float())
        ids = torch.tensor([[1, 5, 9, 100, 200, 3, 7, 8]])
        l1 = m1(ids).logits
        l2 = m2(ids).logits
    rp = dict(cfg.rope_parameters) if getattr(cfg, "rope_parameters", None) else {}
    print(json.dumps({"keys_equal": sorted(a) == sorted(b), "max_weight_diff": max(diffs.values()),
                      "logit_diff": float((l1 - l2).abs().max()), "rope": {k: rp[k] for k in sorted(rp)},
                      "tie": bool(cfg.tie_word_embeddings), "kv": cfg.num_key_value_heads}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "fixture":
        fixture(sys.argv[2])
    elif cmd == "weights":
        weights(sys.argv[2], sys.argv[3])
    elif cmd == "tokenizer":
        tokenizer(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else None)
    elif cmd == "generate":
        generate(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    elif cmd == "roundtrip":
        roundtrip(sys.argv[2])
    elif cmd == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"unknown command {cmd}")
