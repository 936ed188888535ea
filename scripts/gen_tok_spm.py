#!/usr/bin/env python3
"""Writes the SentencePiece-style BPE fixtures of tests/test_tok.c with the
reference implementations (`tokenizers`, and transformers for the GGUF
forms).  Run from the repository root with a Python that has tokenizers,
transformers and gguf (e.g. /work/.venv/bin/python):

    python3 scripts/gen_tok_spm.py [SHARED_DIR]

A small BPE (1,000 merges over U+2581-spelled text, byte_fallback, the 256
<0xHH> byte tokens in the vocabulary but not added tokens, <start_of_turn>
and <end_of_turn> special) is trained on the shared datasets, then written in
the forms SentencePiece-style models come in:
  tok-spm-gemma/tokenizer.json   normalizer Replace(" " -> "\\u2581"), no
      pre-tokenizer, decoder Replace/ByteFallback/Fuse (Gemma's form);
  tok-spm-meta/tokenizer.json    pre-tokenizer Metaspace(prepend_scheme
      always, split), decoder Metaspace;
  tok-spm-llama/tokenizer.json   pre-tokenizer Metaspace(prepend_scheme first,
      no split), decoder Replace/ByteFallback/Fuse/Strip(1) (transformers'
      LlamaTokenizer);
  tok-spm-legacy/tokenizer.json  normalizer Prepend("\\u2581") then Replace,
      Split(" ", merged_with_previous) pre-tokenizer (a no-op after it),
      decoder as llama (Llama 2's older files);
  tok_ids_spm-<form>.json        ids and decoded text of tests/fixtures/
      tok_strings.json (encode(s, add_special_tokens=False), decode(ids,
      skip_special_tokens=False));
  tok-spm-gguf/gemma3.gguf, llama.gguf  the same vocabulary as GGUF metadata
      (tokenizer.ggml.model "llama", scores -id, token types, no merges),
      general.architecture gemma3 or llama, no tensors;
  tok_ids_spm-gguf-<arch>.json  ids and decoded text from transformers'
      conversion of that file (AutoTokenizer.from_pretrained(gguf_file=)).
Everything is seeded or deterministic: re-running gives the same files."""
import json, os, sys
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, decoders, trainers, Regex

SHARED = sys.argv[1] if len(sys.argv) > 1 else "../shared"
FIX = "tests/fixtures"
BYTES = ["<0x%02X>" % b for b in range(256)]
SPECIAL = ["<unk>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"]


def corpus():
    for l in open(f"{SHARED}/data/math500/test.jsonl", encoding="utf-8"):
        r = json.loads(l)
        yield r["problem"]
        yield r["solution"]
    for r in json.load(open(f"{SHARED}/data/webwalkerqa/test.json", encoding="utf-8")):
        yield r["Question"]


def train():
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never", split=True)
    tr = trainers.BpeTrainer(vocab_size=len(SPECIAL) + 256 + 1200, special_tokens=SPECIAL + BYTES,
                             limit_alphabet=150, show_progress=False)
    tok.train_from_iterator(corpus(), tr)
    j = json.loads(tok.to_str())
    # The byte tokens stay in the vocabulary but are not added tokens (as in
    # Gemma's and Llama's files: typed "<0x41>" is text).
    j["added_tokens"] = [a for a in j["added_tokens"] if a["content"] in SPECIAL]
    j["pre_tokenizer"] = None
    j["decoder"] = parts(decoder=decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                                    decoders.Fuse()]))["decoder"]
    return j


def parts(normalizer=None, pre=None, decoder=None):
    """The JSON of a normalizer, pre-tokenizer and decoder."""
    t = Tokenizer(models.BPE())
    t.normalizer, t.pre_tokenizer, t.decoder = normalizer, pre, decoder
    return json.loads(t.to_str())


def form(base, name):
    j = json.loads(json.dumps(base))
    strip = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                               decoders.Strip(" ", 1, 0)])
    if name == "meta":
        p = parts(pre=pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True),
                  decoder=decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True))
    elif name == "llama":
        p = parts(pre=pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False),
                  decoder=strip)
    elif name == "legacy":
        p = parts(normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]),
                  pre_tokenizers.Split(" ", behavior="merged_with_previous"), strip)
    else:
        p = {k: j[k] for k in ("normalizer", "pre_tokenizer", "decoder")}
    for k in ("normalizer", "pre_tokenizer", "decoder"):
        j[k] = p[k]
    return Tokenizer.from_str(json.dumps(j))


def record(tok, strings, path):
    rows = []
    for s in strings:
        ids = tok.encode(s, add_special_tokens=False).ids
        rows.append({"text": s, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    with open(path, "w", encoding="utf-8") as f:
        json.dump(rows, f, ensure_ascii=False)
    print(path, len(rows), "strings")


def write_gguf(base, arch, path):
    import gguf
    vocab = base["model"]["vocab"]
    tokens = [None] * len(vocab)
    for k, v in vocab.items():
        tokens[v] = k
    types = [gguf.TokenType.CONTROL if t in SPECIAL[1:] else gguf.TokenType.UNKNOWN if t == "<unk>"
             else gguf.TokenType.BYTE if t in BYTES else gguf.TokenType.NORMAL for t in tokens]
    w = gguf.GGUFWriter(path, arch)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores([-float(i) for i in range(len(tokens))])
    w.add_token_types(types)
    w.add_bos_token_id(SPECIAL.index("<bos>"))
    w.add_eos_token_id(SPECIAL.index("<eos>"))
    w.add_unk_token_id(SPECIAL.index("<unk>"))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    from transformers import AutoTokenizer
    strings = json.load(open(f"{FIX}/tok_strings.json", encoding="utf-8"))
    base = train()
    for name in ("gemma", "meta", "llama", "legacy"):
        tok = form(base, name)
        os.makedirs(f"{FIX}/tok-spm-{name}", exist_ok=True)
        tok.save(f"{FIX}/tok-spm-{name}/tokenizer.json")
        record(tok, strings, f"{FIX}/tok_ids_spm-{name}.json")
    os.makedirs(f"{FIX}/tok-spm-gguf", exist_ok=True)
    for arch in ("gemma3", "llama"):
        path = f"{FIX}/tok-spm-gguf/{arch}.gguf"
        write_gguf(base, arch, path)
        tf = AutoTokenizer.from_pretrained(os.path.abspath(f"{FIX}/tok-spm-gguf"), gguf_file=f"{arch}.gguf")
        record(Tokenizer.from_str(tf.backend_tokenizer.to_str()), strings, f"{FIX}/tok_ids_spm-gguf-{arch}.json")


if __name__ == "__main__":
    main()
