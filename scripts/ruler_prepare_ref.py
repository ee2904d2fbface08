#!/usr/bin/env python3
"""Peer for the RULER prompt-preparation benchmark (scripts/bench-ruler): a Python re-implementation of RULER's
sample generation and length-fitting loops.

    python3 scripts/ruler_prepare_ref.py TOKENIZER_DIR LENGTH TASKS [SAMPLES]

TASKS is comma-separated, names as in eval/ruler.json. For each task this prints one JSON line
{"task", "seconds", "lengths", "units", "setup_seconds"}: `lengths` are RULER's `length` field per sample
(prompt tokens + tokens_to_generate), `units` the haystack units each sample ended up with, `seconds` the time
to fit and generate SAMPLES samples (default 2) at LENGTH tokens, timed after the tokenizer is loaded and after
the task's word lists are built (`setup_seconds`, reported separately).

This is NOT RULER's code. RULER (NVIDIA/RULER) is not on PyPI and GitHub cannot be reached here, so its
scripts cannot be installed; this file re-implements, from the behaviour recorded in the project's reference
notes (RULER commit c3f5e3b: scripts/data/prepare.py, template.py, tokenizer.py and
scripts/data/synthetic/{niah,variable_tracking,common_words_extraction,freq_words_extraction}.py), what those
scripts do for one task with `--model_template_type base --random_seed 42`:

* templates and answer prefixes (from eval/ruler.json), the prompt being `template + answer_prefix` formatted
  as one string, the niah singular rewrite, needles, the noise haystack (the repeated grass/sky line) and the
  distractor-needle haystack, vt chains and its 500-token in-context example, cwe's word lists and few-shot,
  fwe's coded-word Zipf text;
* keys and words from wonderwords 3.0.1's bundled lists (adjective-noun keys, the noun+adjective+verb pool),
  7-digit numbers and uuid4 values from Python's `random`, vt values from NumPy's legacy `np.random`,
  the fixed `random.Random(42)` shuffles;
* the length fitting: estimate tokens per unit from a small sample, binary search on the number of haystack
  units (regenerating a random sample at every probe), then per sample step down by `incremental` units
  while it does not fit; fwe's linear walk (start max_len // 6 words, step max_len // 32) and its per-sample
  step-down;
* token counting as RULER's `hf` tokenizer: `len(AutoTokenizer.from_pretrained(dir).tokenize(text))`,
  no special tokens, on the whole prompt including the answer prefix.

Random numbers are drawn in RULER's order, so with the tokenizer of the recorded RULER samples this reproduces
them byte for byte (input + answer prefix, outputs, length; checked for all six tasks below at 1024, 4096 and
16384 tokens, 5 samples each, against the files RULER's own prepare.py wrote).

Left out: essay-haystack tasks (niah_single_2/3, niah_multikey_1, niah_multivalue, niah_multiquery: RULER's
Paul Graham essays are not shipped) and qa_1/qa_2 (need SQuAD/HotpotQA files the user supplies); they are
reported as skipped. Also left out, because they only make RULER slower: the prepare.py subprocess per task,
writing validation.jsonl, and niah's `token_position_answer` (one more tokenization per sample).
Substitute: cwe's fallback pool `json/english_words.json` (370,101 English words, a Git-LFS file of RULER's)
is not available; when a probe needs more words than the 8,166-word wonderwords pool, this samples from a
stand-in of 370,101 random lowercase words (3-12 letters) instead, or from the file named by
RULER_ENGLISH_WORDS if set. Either costs more tokens per word than the wonderwords pool, which is what makes
RULER's search stop at the pool size at 128K.
"""
import json
import os
import random
import string
import sys
import time
import uuid

import numpy as np

NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
NEEDLE = "One of the special magic {type_needle_v} for {key} is: {value}."
SEED = 42  # RULER's --random_seed default
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "eval", "ruler.json")


class DoesNotFit(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------
# Word lists (built once per process, outside the timed region: RULER builds them at import).

_cache = {}


def wonderwords_list(name):
    import wonderwords.random_word as rw
    return rw._get_words_from_text_file(name)


def niah_words():
    """RULER's niah keys: every adjective-noun pair of wonderwords' lists, sorted and de-duplicated."""
    if "niah" not in _cache:
        adjs, nouns = wonderwords_list("adjectivelist.txt"), wonderwords_list("nounlist.txt")
        _cache["niah"] = sorted(set(f"{a}-{n}" for a in adjs for n in nouns))
    return _cache["niah"]


def cwe_words():
    """cwe's pool (nouns + adjectives + verbs, sorted, shuffled with Random(42)) and the larger fallback pool."""
    if "cwe" not in _cache:
        pool = sorted(set(wonderwords_list("nounlist.txt") + wonderwords_list("adjectivelist.txt")
                          + wonderwords_list("verblist.txt")))
        random.Random(SEED).shuffle(pool)
        path = os.environ.get("RULER_ENGLISH_WORDS")
        if path:
            with open(path) as f:
                fallback = list(json.load(f).values())
        else:  # stand-in for json/english_words.json (see the module docstring)
            r = random.Random(1)
            fallback = ["".join(r.choices(string.ascii_lowercase, k=r.randint(3, 12))) for _ in range(370101)]
        _cache["cwe"] = (pool, fallback)
    return _cache["cwe"]


# ---------------------------------------------------------------------------------------------------------
# RULER's fitting: estimate, binary search over haystack units, per-sample step-down.

def binary_search_units(gen, count, max_len, incremental, extra_tokens, upper_from):
    """Largest unit count whose regenerated sample fits; each probe draws a new random sample (as RULER)."""
    lo, hi = incremental, upper_from
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        text = gen(mid)[0]
        if count(text) + extra_tokens <= max_len:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best if best is not None else incremental


def step_down(gen, count, max_len, incremental, ttg, units):
    """One sample: regenerate with `units`, dropping `incremental` units while it does not fit.
    RULER loops forever once units <= incremental; this raises instead."""
    while True:
        text, outputs = gen(units)
        length = count(text) + ttg
        if length <= max_len:
            return text, outputs, length, units
        if units <= incremental:
            raise DoesNotFit(f"does not fit {max_len} tokens even with {units} units")
        units -= incremental


# ---------------------------------------------------------------------------------------------------------
# niah (noise and needle haystacks)

def niah(args, template, ttg, length, samples, count):
    hay, tk, tv = args["type_haystack"], args["type_needle_k"], args["type_needle_v"]
    nv, nq = args["num_needle_v"], args["num_needle_q"]
    nk = max(args["num_needle_k"], nq)
    words = niah_words() if "words" in (tk, tv) else None

    def rand(kind):
        if kind == "numbers":
            return str(random.randint(10 ** 6, 10 ** 7 - 1))
        if kind == "words":
            return random.choice(words)
        return str(uuid.UUID(int=random.getrandbits(128), version=4))

    # Singular wording when one value is asked for: a blind replace over the whole template.
    shown = tv
    if nq * nv == 1:
        for a, b in (("Some", "A"), ("are all", "is"), ("are", "is"), ("answers", "answer")):
            template = template.replace(a, b)
        shown = tv[:-1]

    def gen(n):
        keys, values, needles = [], [], []
        for _ in range(nk):
            keys.append(rand(tk))
            vs = []
            for _ in range(nv):
                vs.append(rand(tv))
                needles.append(NEEDLE.format(type_needle_v=tv, key=keys[-1], value=vs[-1]))
            values.append(vs)
        random.Random(SEED).shuffle(needles)
        if hay == "noise":
            lines = [NOISE] * n
        else:  # "needle": distractor needles with random keys and values
            lines = [NEEDLE.format(type_needle_v=tv, key=rand(tk), value=rand(tv)) for _ in range(n)]
        for pos, needle in zip(sorted(random.sample(range(n), len(needles)), reverse=True), needles):
            lines.insert(pos, needle)
        picked = random.sample(range(nk), nq)
        queries = [keys[i] for i in picked]
        query = queries[0] if len(queries) == 1 else ", ".join(queries[:-1]) + ", and " + queries[-1]
        text = template.format(type_needle_v=shown, context="\n".join(lines), query=query)
        return text, [v for i in picked for v in values[i]]

    inc = 5 if length < 4096 else 25
    tpu = count(gen(inc)[0]) / inc
    units = binary_search_units(gen, count, length, inc, ttg, max(int(length / tpu * 3), inc * 2))
    return [step_down(gen, count, length, inc, ttg, units) for _ in range(samples)]


# ---------------------------------------------------------------------------------------------------------
# vt: variable tracking with a 500-token in-context example

def vt(args, template, ttg, length, samples, count, bare_template):
    chains, hops = args["num_chains"], args["num_hops"]
    upper = string.ascii_uppercase

    def gen(n, icl):
        k = 3 if icl else 5
        names = ["".join(random.choices(upper, k=k)) for _ in range((hops + 1) * chains)]
        while len(set(names)) < chains * (hops + 1):  # RULER appends but slices the first ones
            names.append("".join(random.choices(upper, k=k)))
        groups, lines = [], []
        for c in range(chains):
            g = names[c * (hops + 1):(c + 1) * (hops + 1)]
            value = "12345" if icl else str(np.random.randint(10000, 99999))
            groups.append(g)
            lines.append([f"VAR {g[0]} = {value}"] + [f"VAR {g[j + 1]} = VAR {g[j]} " for j in range(hops)])
        value = lines[0][0].split("=")[-1].strip()
        sentences = [NOISE] * n
        for chain in lines:
            for j, pos in enumerate(sorted(random.sample(range(len(sentences)), len(chain)))):
                sentences.insert(pos + j, chain[j])
        context = "\n".join(sentences).replace(". \n", ".\n")
        return template.format(context=context, query=value, num_v=hops + 1), groups[0]

    # 1. The in-context example: fitted to 500 tokens, nothing to generate, 5-line steps, one sample.
    g_icl = lambda n: gen(n, True)
    tpu = count(g_icl(5)[0]) / 5
    n_icl = binary_search_units(g_icl, count, 500, 5, 0, max(int(500 / tpu * 3), 10))
    text, names, _, _ = step_down(g_icl, count, 500, 5, 0, n_icl)
    example = text + " " + " ".join(names) + "\n"
    example_tokens = count(example)

    def randomized_example():
        ex = example
        for item in ex.strip().split()[-hops - 1:]:
            ex = ex.replace(item, "".join(random.choices(upper, k=len(item))))
        return ex.replace("12345", str(np.random.randint(10000, 99999)))

    # 2. The real samples: the example goes in front of the task text.
    inc = 5 if length < 4096 else 10
    g = lambda n: gen(n, False)
    tpu = count(g(inc)[0]) / inc
    units = binary_search_units(g, count, length, inc, example_tokens + ttg, max(int(length / tpu * 3), inc * 2))

    def with_example(n):
        text, names = g(n)
        cut = text.index(bare_template[:20])
        return text[:cut] + randomized_example() + "\n" + text[cut:], names

    return [step_down(with_example, count, length, inc, ttg, units) for _ in range(samples)]


# ---------------------------------------------------------------------------------------------------------
# cwe: common words extraction with one few-shot example

def cwe(args, template, ttg, length, samples, count):
    pool, fallback = cwe_words()
    num_cw = args["num_cw"]

    def example(num_words, rep_c, rep_u):
        chosen = random.sample(pool if num_words <= len(pool) else fallback, num_words)
        common = chosen[:num_cw]
        seq = common * rep_c + chosen[num_cw:] * rep_u
        random.Random(SEED).shuffle(seq)
        return " ".join(f"{i + 1}. {w}" for i, w in enumerate(seq)), common

    def gen(n):
        if length < 4096:
            shot, shot_answer = example(20, 3, 1)
            ctx, answer = example(n, 6, 1)
        else:
            shot, shot_answer = example(40, 10, 3)
            ctx, answer = example(n, args["freq_cw"], args["freq_ucw"])
        shot_text = template.format(context=shot, num_cw=num_cw, query="") + " " + \
            " ".join(f"{i + 1}. {w}" for i, w in enumerate(shot_answer))
        return shot_text + "\n" + template.format(context=ctx, num_cw=num_cw, query=""), answer

    inc = 10
    tpw = count(gen(4096)[0]) / 4096
    units = binary_search_units(gen, count, length, inc, ttg, max(int(length // tpw) * 2, inc * 2))
    return [step_down(gen, count, length, inc, ttg, units) for _ in range(samples)]


# ---------------------------------------------------------------------------------------------------------
# fwe: frequent (coded) words extraction, linear fitting

def zeta(alpha):
    try:
        from scipy.special import zeta as z  # RULER uses scipy
        return float(z(alpha))
    except ImportError:
        return sum(k ** -alpha for k in range(1, 1_000_000)) + 1_000_000 ** (1 - alpha) / (alpha - 1)


def fwe(args, template, ttg, length, samples, count):
    alpha, wordlen = args["alpha"], 6
    max_len = length - ttg
    vocab_size = max_len // 50
    step = max_len // 32
    z = zeta(alpha)

    def make_vocab():
        vocab = ["".join(random.choices(string.ascii_lowercase, k=wordlen)) for _ in range(vocab_size)]
        while len(set(vocab)) < vocab_size:
            vocab.append("".join(random.choices(string.ascii_lowercase, k=wordlen)))
        vocab = sorted(set(vocab))
        random.Random(SEED).shuffle(vocab)
        vocab[0] = "..."  # the top rank is noise
        return vocab

    def text_for(vocab, n):
        counts = (n * (np.arange(1, len(vocab) + 1) ** -alpha) / z).astype(int)
        seq = [w for w, c in zip(vocab, counts) for _ in range(c)]
        random.Random(SEED).shuffle(seq)
        return template.format(context=" ".join(seq), query=""), vocab[1:4]

    # Fitting: walk up from max_len // 6 words while the prompt is shorter than max_len, then one step back.
    vocab = make_vocab()
    n = max_len // wordlen
    while count(text_for(vocab, n)[0]) < max_len:
        n += step
    n -= step
    text_for(vocab, n)  # RULER regenerates the final text here (unused)

    out = []
    for _ in range(samples):
        vocab = make_vocab()  # each sample draws a new vocabulary
        used = n
        text, answer = text_for(vocab, used)
        while count(text) > max_len:
            used -= step
            text, answer = text_for(vocab, used)
        text, answer = text_for(vocab, used)
        out.append((text, answer, count(text) + ttg, used))
    return out


# ---------------------------------------------------------------------------------------------------------

def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__.split("\n\n")[1])
    tok_dir, length, tasks = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    samples = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    cfg = json.load(open(CONFIG))

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(tok_dir, trust_remote_code=True)

    def count(text):
        return len(tokenizer.tokenize(text))

    for task in tasks:
        spec = cfg["tasks"][task]
        fam = cfg["families"][spec["family"]]
        args = spec["args"]
        if spec["family"] == "qa" or args.get("type_haystack") == "essay":
            why = "needs SQuAD/HotpotQA files" if spec["family"] == "qa" else "essay haystack not shipped"
            print(json.dumps({"task": task, "skipped": why}), flush=True)
            continue
        # prepare.py with the `base` model template passes template + answer prefix as one string.
        template = fam["template"] + fam["answer_prefix"]
        ttg = fam["tokens_to_generate"]
        # Each RULER task runs in a fresh process seeded with --random_seed.
        random.seed(SEED)
        np.random.seed(SEED)
        t_setup = time.perf_counter()
        if spec["family"] == "niah" and "words" in (args["type_needle_k"], args["type_needle_v"]):
            niah_words()
        elif spec["family"] == "common_words_extraction":
            cwe_words()
        setup = time.perf_counter() - t_setup

        t0 = time.perf_counter()
        if spec["family"] == "niah":
            rows = niah(args, template, ttg, length, samples, count)
        elif spec["family"] == "variable_tracking":
            rows = vt(args, template, ttg, length, samples, count, fam["template"])
        elif spec["family"] == "common_words_extraction":
            rows = cwe(args, template, ttg, length, samples, count)
        elif spec["family"] == "freq_words_extraction":
            rows = fwe(args, template, ttg, length, samples, count)
        else:
            raise SystemExit(f"{task}: unknown family {spec['family']}")
        seconds = time.perf_counter() - t0
        print(json.dumps({"task": task, "seconds": seconds, "lengths": [r[2] for r in rows],
                          "units": [r[3] for r in rows], "setup_seconds": setup}), flush=True)


if __name__ == "__main__":
    main()
