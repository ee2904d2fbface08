"""Tokenizer interop: reference encodings, decodings and chat renderings from Hugging Face `tokenizers` and
`transformers`, for the Swift Tokenizers tests.

Usage:
  tokenizer_interop.py train OUTDIR [N_STRINGS]
      Trains small BPE tokenizers with `tokenizers` on text this script generates (seeded), in the styles of
      GPT-2, Llama 3, Qwen2, Llama 2 (SentencePiece-style BPE with byte fallback), a Metaspace variant and
      SmolLM2; writes OUTDIR/NAME/tokenizer.json and OUTDIR/NAME/cases.json (test strings with reference
      ids with and without special tokens and the decodes of those ids with and without
      skip_special_tokens, plus random id lists — many not valid UTF-8 — and their decodes).
  tokenizer_interop.py check MODEL_DIR OUT.json
      Loads MODEL_DIR with `tokenizers` and `transformers.AutoTokenizer`; writes both encodings of generated
      strings and whether they agree.
  tokenizer_interop.py chat OUTDIR
      Writes model directories with real chat templates (ChatML/SmolLM2/Qwen2, Llama 3, Mistral, Llama 2)
      and transformers' apply_chat_template(tokenize=False) renderings of a few conversations.
"""
import json
import os
import random
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN2 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

WORDS = ("the of and to in is it that was for on with as be at by this had not are but from or have an they which one you "
         "were her all she there would their we him been has when who will more no if out so said what up its about into "
         "than them can only other new some could time these two may then do first any my now such like our over man me "
         "even most made after also did many before must through back years where much your way well down should because "
         "each just those people how too little state good very make world still own see men work long get here between both "
         "life being under never day same another know while last might us great old year off come since against go came "
         "right used take three tokenizer model context window attention rotary embedding").split()
SPECIAL_SEQS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|eot_id|>",
                "<tag>", "<sw>"]
SCRIPTS = ["日本語のテキストです。", "中文分词测试，你好世界！", "한국어 문장입니다", "Привет, мир! Как дела?", "Ελληνικά γράμματα",
           "عربى النص هنا", "हिन्दी पाठ", "שלום עולם", "ไทยภาษา", "Ünïcödé façade naïve café"]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "❤️", "🤖", "✨", "🧪"]
COMBINING = ["e\u0301", "a\u0308", "n\u0303", "o\u0302\u0323", "\u0301start", "x\u20dd"]
WHITESPACE = [" ", "  ", "\t", "\n", "\r\n", "\n\n", " \n ", "\u00a0", "\u2003", "\u3000", "\u0085", "\u2028", "   \t  ", "\r"]
CODE = ["def f(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) { a[i] += b[i]; }",
        "if __name__ == '__main__':\n\tmain()", "let x: [Int] = [1, 2, 3] // comment", "SELECT * FROM t WHERE id = 42;",
        "<div class=\"a\">x &amp; y</div>", "x=1;y=2\r\nz = x+y  # sum"]
CONTRACTIONS = ["it's", "IT'S", "we're", "They'VE", "I'm", "you'll", "he'd", "O'Neil", "'s", "ſ'ſ", "can'T", "'LL"]


def rand_char(rng):
    r = rng.random()
    if r < 0.5:
        return chr(rng.randrange(32, 127))
    ranges = [(0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F), (0x2000, 0x206F),
              (0x20A0, 0x20BF), (0x2100, 0x218F), (0x2190, 0x23FF), (0x3000, 0x30FF), (0x4E00, 0x4FFF), (0xAC00, 0xAD00),
              (0x1F300, 0x1F64F), (0x1D400, 0x1D4FF), (0xFF00, 0xFFEF)]
    while True:
        lo, hi = rng.choice(ranges)
        c = rng.randrange(lo, hi + 1)
        if not (0xD800 <= c <= 0xDFFF):
            return chr(c)


def sentence(rng, n=None):
    n = n or rng.randint(3, 15)
    w = [rng.choice(WORDS) for _ in range(n)]
    w[0] = w[0].capitalize()
    return " ".join(w) + rng.choice([".", "!", "?", ",", "", "..."])


def test_string(rng, i):
    kind = i % 12
    if kind == 0:
        return sentence(rng)
    if kind == 1:
        return " ".join(sentence(rng) for _ in range(rng.randint(1, 4)))
    if kind == 2:
        return rng.choice(SCRIPTS) + rng.choice(WHITESPACE) + rng.choice(SCRIPTS)
    if kind == 3:
        return "".join(rng.choice(EMOJI + COMBINING + [" ", "a", "1"]) for _ in range(rng.randint(1, 10)))
    if kind == 4:
        return "".join(rng.choice(WHITESPACE + [rng.choice(WORDS)]) for _ in range(rng.randint(1, 10)))
    if kind == 5:
        return " ".join(rng.choice([str(rng.randint(0, 10 ** rng.randint(1, 9))), "3.14159", "1,000,000", "2024-11-23", "x2y3"])
                        for _ in range(rng.randint(1, 6)))
    if kind == 6:
        parts = [sentence(rng, rng.randint(1, 4)) for _ in range(3)]
        return parts[0] + rng.choice(SPECIAL_SEQS) + parts[1] + rng.choice(["", " "]) + rng.choice(SPECIAL_SEQS) + parts[2]
    if kind == 7:
        return rng.choice(CODE) + rng.choice(["", "\n", "    "]) + rng.choice(CODE)
    if kind == 8:
        return "".join(rand_char(rng) for _ in range(rng.randint(1, 40)))
    if kind == 9:
        return " ".join(rng.choice(CONTRACTIONS + WORDS) for _ in range(rng.randint(1, 8)))
    if kind == 10:
        return rng.choice(WHITESPACE) + sentence(rng, 3) + rng.choice(WHITESPACE) + rng.choice(SPECIAL_SEQS) + rng.choice(WHITESPACE)
    return "".join(rng.choice([sentence(rng, 2), rng.choice(SCRIPTS), rng.choice(EMOJI), rng.choice(WHITESPACE),
                               rng.choice(SPECIAL_SEQS), rng.choice(CODE), rand_char(rng)]) for _ in range(rng.randint(1, 6)))


def corpus(seed, n):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        out.append(sentence(rng) if i % 3 else test_string(rng, i))
    return out


def bpe_trainer(vocab_size, specials, byte_level, limit_alphabet=None):
    kw = dict(vocab_size=vocab_size, special_tokens=specials, min_frequency=2, show_progress=False)
    if byte_level:
        kw["initial_alphabet"] = pre_tokenizers.ByteLevel.alphabet()
    if limit_alphabet:
        kw["limit_alphabet"] = limit_alphabet
    return trainers.BpeTrainer(**kw)


def build_all():
    text = corpus(1, 6000)
    toks = {}

    # (a) GPT-2: byte-level BPE with the GPT-2 regex; bos template; lstrip/rstrip and single-word added tokens.
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator(text, bpe_trainer(1500, ["<|endoftext|>", "<s>"], True))
    t.add_tokens([AddedToken("<tag>", lstrip=True, rstrip=True), AddedToken("<sw>", single_word=True)])
    t.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", t.token_to_id("<s>"))])
    toks["gpt2"] = t

    # (b) Llama 3: Split(regex) + ByteLevel(use_regex=False), ignore_merges, bos via Sequence[ByteLevel, Template].
    t = Tokenizer(models.BPE(ignore_merges=True))
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator(text, bpe_trainer(2000, ["<|begin_of_text|>", "<|eot_id|>"], True))
    t.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      special_tokens=[("<|begin_of_text|>", t.token_to_id("<|begin_of_text|>"))])])
    toks["llama3"] = t

    # Qwen2: NFC normalizer, single digits, no bos.
    t = Tokenizer(models.BPE())
    t.normalizer = normalizers.NFC()
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    t.post_processor = processors.ByteLevel(trim_offsets=False)
    t.train_from_iterator(text, bpe_trainer(1800, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], True))
    toks["qwen2"] = t

    # (c) Llama 2 / SentencePiece-style: trained with Metaspace; then the Llama 2 normalizer and decoder are set.
    bytes_ = ["<0x%02X>" % i for i in range(256)]
    t = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    t.train_from_iterator(text, bpe_trainer(1500, ["<unk>", "<s>", "</s>"] + bytes_, False, limit_alphabet=120))
    toks["llama2"] = t

    # Metaspace pre-tokenizer (prepend_scheme first) and decoder, same model.
    t = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    t.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    t.train_from_iterator(text, bpe_trainer(1200, ["<unk>", "<s>", "</s>"] + bytes_, False, limit_alphabet=120))
    t.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", t.token_to_id("<s>"))])
    toks["metaspace"] = t

    # (d) SmolLM2: Sequence[Digits(individual), ByteLevel].
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                               pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    t.decoder = decoders.ByteLevel()
    t.post_processor = processors.ByteLevel(trim_offsets=False)
    t.train_from_iterator(text, bpe_trainer(1600, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], True))
    toks["smollm"] = t

    # Llama 2 and Metaspace: byte tokens live in the vocabulary only (as in real files), not in added_tokens.
    for name in ["llama2", "metaspace"]:
        j = json.loads(toks[name].to_str())
        j["added_tokens"] = [a for a in j["added_tokens"] if a["content"] not in bytes_]
        if name == "llama2":
            j["pre_tokenizer"] = None
            j["normalizer"] = {"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": "\u2581"}, {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
            j["decoder"] = {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"},
                {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
            j["post_processor"] = {"type": "TemplateProcessing",
                                   "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                                   "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                                   "special_tokens": {"<s>": {"id": "<s>", "ids": [j["model"]["vocab"]["<s>"]], "tokens": ["<s>"]}}}
        toks[name] = Tokenizer.from_str(json.dumps(j))
    # Legacy "a b" merges for one of them.
    j = json.loads(toks["smollm"].to_str())
    j["model"]["merges"] = [" ".join(m) for m in j["model"]["merges"]]
    toks["smollm"] = Tokenizer.from_str(json.dumps(j))
    return toks


def cmd_train(out, n):
    rng = random.Random(7)
    strings = [test_string(rng, i) for i in range(n)]
    for name, t in build_all().items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        t.save(os.path.join(d, "tokenizer.json"))
        cases = []
        for s in strings:
            with_sp = t.encode(s, add_special_tokens=True).ids
            without = t.encode(s, add_special_tokens=False).ids
            cases.append({"text": s, "ids": with_sp, "ids_no_special": without,
                          "decode": t.decode(with_sp, skip_special_tokens=False),
                          "decode_skip": t.decode(with_sp, skip_special_tokens=True)})
        r = random.Random(11)
        size = t.get_vocab_size(with_added_tokens=True)
        raw = []
        for k in range(300):
            ids = [r.randrange(size) for _ in range(r.randint(1, 8))]
            raw.append({"ids": ids, "decode": t.decode(ids, skip_special_tokens=False),
                        "decode_skip": t.decode(ids, skip_special_tokens=True)})
        with open(os.path.join(d, "cases.json"), "w") as f:
            json.dump({"vocab_size": size, "cases": cases, "raw": raw}, f)


def cmd_check(model_dir, out):
    from transformers import AutoTokenizer
    t = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    at = AutoTokenizer.from_pretrained(model_dir)
    rng = random.Random(3)
    strings = [test_string(rng, i) for i in range(300)]
    res = []
    for s in strings:
        a = t.encode(s).ids
        b = at.encode(s)
        res.append({"text": s, "ids": a, "auto_ids": b, "decode": t.decode(a), "auto_decode": at.decode(b)})
    info = {"vocab_size": t.get_vocab_size(), "auto_len": len(at), "eos": at.eos_token_id, "bos": at.bos_token_id,
            "chat": at.apply_chat_template([{"role": "user", "content": "Hi there"}], tokenize=False, add_generation_prompt=True)}
    with open(out, "w") as f:
        json.dump({"info": info, "cases": res}, f)


SMOLLM2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
           "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + "
           "message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
           "{{ '<|im_start|>assistant\n' }}{% endif %}")
QWEN2_T = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a "
           "helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
           "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LLAMA3_T = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
            "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
            "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
            "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
MISTRAL_T = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
             "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
             "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
             "'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are "
             "supported!') }}{% endif %}{% endfor %}")
LLAMA2_T = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
            "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
            "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
            "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
            "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
            "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
            "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
            "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")

# Llama 3.1 / 3.3 Instruct's template (tools branches included; the conversations here pass no tools), and the
# Llama 3.2 variant whose date comes from strftime_now.
LLAMA31_T = """{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\\n\\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""
LLAMA32_T = LLAMA31_T.replace("""    {%- set date_string = "26 Jul 2024" %}""", """    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}""")


def cmd_chat(out, tokenizer_dir):
    from transformers import AutoTokenizer
    templates = {"smollm2": SMOLLM2, "qwen2": QWEN2_T, "chatml": CHATML, "llama3": LLAMA3_T, "mistral": MISTRAL_T, "llama2": LLAMA2_T,
                 "llama31": LLAMA31_T, "llama32": LLAMA32_T}
    convs = [
        [{"role": "user", "content": "What is the capital of France?"}],
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "  Hi there!\n"}],
        [{"role": "user", "content": "One"}, {"role": "assistant", "content": " Two \n"}, {"role": "user", "content": "Three\n\nFour"}],
        [{"role": "system", "content": "Sys\nline"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
         {"role": "user", "content": "c 日本 😀"}],
        [{"role": "system", "content": "  \n"}, {"role": "user", "content": "Weather?"}, {"role": "assistant", "content": "Checking."},
         {"role": "tool", "content": " 21 \"C\" \\ \t\u0001 日本\n"}],
    ]
    tok_json = open(os.path.join(tokenizer_dir, "tokenizer.json")).read()
    results = []
    for name, tmpl in templates.items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "tokenizer.json"), "w") as f:
            f.write(tok_json)
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump({"bos_token": "<s>", "eos_token": "</s>", "chat_template": tmpl, "clean_up_tokenization_spaces": False,
                       "tokenizer_class": "PreTrainedTokenizerFast"}, f)
        at = AutoTokenizer.from_pretrained(d)
        for ci, conv in enumerate(convs):
            for gen in [True, False]:
                try:
                    text = at.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
                except Exception as e:  # roles the template rejects
                    text = None
                results.append({"template": name, "conversation": ci, "messages": conv, "add_generation_prompt": gen,
                                "text": text})
    with open(os.path.join(out, "chat.json"), "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    if sys.argv[1] == "train":
        cmd_train(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 2400)
    elif sys.argv[1] == "check":
        cmd_check(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "chat":
        cmd_chat(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
