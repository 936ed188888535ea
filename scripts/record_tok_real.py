#!/usr/bin/env python3
"""Records Hugging Face token ids for tests/fixtures/tok_real_strings.json
(scripts/make_tok_real_strings.py) with the real tokenizers, for
tests/test_tok_real.c.  Needs `tokenizers` and `transformers` (e.g.
/work/.venv/bin/python); run from the repository root:

    python3 scripts/record_tok_real.py qwen3 ../shared/models/tokenizers/qwen3/tokenizer.json
    python3 scripts/record_tok_real.py smollm2 ~/.cache/brisk/models/SmolLM2-135M-Instruct.Q4_1.gguf
    python3 scripts/record_tok_real.py gemma3 ~/.cache/brisk/models/gemma-3-270m-q4_k_m.gguf

Writes tests/fixtures/tok_real_ids_NAME.json:
  {"reference": how the ids were made, "versions": {...}, "n": number of strings,
   "ids": [ids of encode(s, add_special_tokens=False), special tokens
           recognised (brisk: allow_special = 1)],
   "ids_nospecial": [ids with encode_special_tokens = True (special tokens
           are text; brisk: allow_special = 0), or null when equal to ids],
   "decoded": [decode(ids, skip_special_tokens=False), or null when equal
           to the string]}
and for smollm2 also "ids_transformers": [ids from transformers' own GGUF
conversion, or null when equal to ids] (see below).

References:
  qwen3    `tokenizers.Tokenizer.from_file(tokenizer.json)`.
  smollm2  the model exists here only as a GGUF file.  transformers builds a
           tokenizer from it (AutoTokenizer.from_pretrained(dir,
           gguf_file=...)): the file's vocabulary and merges, its control
           tokens (token_type 3) as special added tokens, user-defined ones
           (4) as plain added tokens.  But it gives every byte-level GGUF
           whose tokenizer.ggml.pre it has no split regex for (smollm among
           them) GPT-2's plain ByteLevel pre-tokenizer, while SmolLM2's own
           tokenizer.json (and llama.cpp's "smollm") first splits every
           digit apart: Sequence[Digits(individual_digits=true),
           ByteLevel(add_prefix_space=false, use_regex=true)].  The two
           differ where a digit follows two or more spaces ("a  1").  The
           reference is transformers' tokenizer with that pre-tokenizer put
           back, i.e. SmolLM2's tokenizer.json behaviour on the GGUF's
           vocabulary; ids_transformers records where transformers' own
           conversion differs.
  gemma3   the model exists here only as a GGUF file (tokenizer.ggml.model
           "llama": SentencePiece BPE, no merges listed).  The reference is
           transformers' own conversion, unchanged: GemmaTokenizer (BPE with
           byte_fallback, normalizer Replace(" " -> "\u2581"), decoder
           Replace/ByteFallback/Fuse) over the file's vocabulary, with the
           merges rebuilt from it (every split of a token into two tokens,
           ranked by the token's position in the file, then longest left
           part first), whitespace-only tokens respelled with "\u2581",
           control tokens as special added tokens and user-defined ones as
           plain added tokens.  This is the form of Gemma's own
           tokenizer.json (BPE, byte_fallback, Replace normalizer, no
           pre-tokenizer split); the Split(" ") pre-tokenizer transformers
           adds never sees a space after that normalizer."""
import json, os, sys

STRINGS = "tests/fixtures/tok_real_strings.json"


def smollm2_tokenizers(gguf):
    from tokenizers import Tokenizer, pre_tokenizers
    from transformers import AutoTokenizer
    tf = AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(gguf)), gguf_file=os.path.basename(gguf))
    conv = Tokenizer.from_str(tf.backend_tokenizer.to_str())
    ref = Tokenizer.from_str(tf.backend_tokenizer.to_str())
    ref.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    return ref, conv


def encode(tok, strings, special_as_text):
    tok.encode_special_tokens = special_as_text
    ids = [e.ids for e in tok.encode_batch(strings, add_special_tokens=False)]
    tok.encode_special_tokens = False
    return ids


def main():
    import tokenizers, transformers
    from tokenizers import Tokenizer
    name, src = sys.argv[1], sys.argv[2]
    with open(STRINGS, encoding="utf-8") as f:
        strings = json.load(f)
    conv = None
    if name == "smollm2":
        tok, conv = smollm2_tokenizers(src)
        how = ("transformers AutoTokenizer.from_pretrained(gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf), "
               "pre-tokenizer set to SmolLM2's tokenizer.json one: Sequence[Digits(individual_digits=true), "
               "ByteLevel(add_prefix_space=false, use_regex=true)]")
    elif name == "gemma3":
        from transformers import AutoTokenizer
        tf = AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(src)), gguf_file=os.path.basename(src))
        tok = Tokenizer.from_str(tf.backend_tokenizer.to_str())
        how = ("transformers AutoTokenizer.from_pretrained(gguf_file=gemma-3-270m-q4_k_m.gguf), "
               "its backend tokenizer unchanged")
    else:
        tok = Tokenizer.from_file(src)
        how = f"tokenizers Tokenizer.from_file({os.path.basename(src)})"
    ids = encode(tok, strings, False)
    nosp = encode(tok, strings, True)
    dec = tok.decode_batch(ids, skip_special_tokens=False)
    res = {"reference": how,
           "versions": {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__},
           "n": len(strings), "ids": ids,
           "ids_nospecial": [b if b != a else None for a, b in zip(ids, nosp)],
           "decoded": [d if d != s else None for s, d in zip(strings, dec)]}
    if conv is not None:
        tf_ids = encode(conv, strings, False)
        res["ids_transformers"] = [b if b != a else None for a, b in zip(ids, tf_ids)]
        print("transformers' own GGUF conversion differs on",
              sum(x is not None for x in res["ids_transformers"]), "of", len(strings), "strings")
    out = f"tests/fixtures/tok_real_ids_{name}.json"
    with open(out, "w", encoding="utf-8") as f:
        json.dump(res, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(name, len(strings), "strings;", sum(x is not None for x in res["ids_nospecial"]),
          "differ with specials as text;", sum(x is not None for x in res["decoded"]),
          "do not decode back to themselves;", os.path.getsize(out), "bytes ->", out)


if __name__ == "__main__":
    main()
