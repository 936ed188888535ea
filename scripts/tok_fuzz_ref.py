#!/usr/bin/env python3
"""Records reference token ids from Hugging Face `tokenizers` for random
strings built from the pre-tokenizers' tricky characters (Unicode spaces,
CR/LF runs, contractions in any case, digits of many scripts, combining
marks, special tokens), for the fixture tokenizers and a few variants
(GPT-2 style ByteLevel with add_prefix_space, contiguous Digits + NFC,
ignore_merges, added tokens with lstrip/rstrip/single_word/normalized).
Run where `tokenizers` exists (the device machine), from the repo root:

    python3 scripts/tok_fuzz_ref.py OUT.json [N]

writes {"version", "strings", "tokenizers": {name: tokenizer.json},
"ids": {name: [ids per string]}, "ids_nospecial": {name: [ids with
encode_special_tokens, or null when equal to ids]}, "decoded": {name:
[decode(ids), or null when equal to the string]}, "decoded_skip": {name:
[decode skipping specials, or null when equal to decoded]}}.
tests/fixtures/tok_fuzz.json is this output for N = 800; tests/test_tok.c
checks it."""
import json, random, sys

FIX = "tests/fixtures"

PIECES = (list("abcXYZ019 '.,!?-_()[]{}<>|/\\\"$%^&*+=~`@#:;") +
          [" ", " ", "  ", "\t", "\n", "\r", "\r\n", "\n\n", "\x0b", "\x0c", "\x85", "\xa0",
           "\u1680", "\u2003", "\u2028", "\u2029", "\u202f", "\u3000", "\u200b", "\u180e",
           "\x1c", "\x1f", "\u200d", "\ufe0f",
           "'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'ve", "'VE", "'m", "'M", "'ll",
           "'LL", "'lL", "'d", "'D", "'\u017f", "\u017f", "\u212a", "'x", "''",
           "\u0661", "\u0967", "\u00b9", "\u00bd", "\u216b", "\u2460", "\U0001d7d8", "\uff11",
           "12", "1234", "12345678", "3.14",
           "\u00e9", "e\u0301", "A\u030a", "\u212b", "\u0958", "\u0915\u093c", "d\u0307\u0323",
           "\u1112\u1161\u11ab", "\ud55c", "\u0301", "\u093c", "\u0903",
           "\u4e2d", "\u6587", "\u30a2", "\u03a9", "\u01c5", "\u00aa", "\u02b0", "\u00df",
           "\u0130", "\u05d0", "\u0627", "\U0001f600", "\U0001f44d\U0001f3fd", "\u2603",
           "<|im_end|>", "<|im_start|>", "<|endoftext|>", "<|im_", "|>", "<tool>", " <tool> ",
           "hello", " hello", "hellothere", "foo", "the", " the", "ing", "tion"])


def rand_string(rng):
    n = rng.choice([1, 2, 3, 5, 8, 13, 21, 40])
    s = "".join(rng.choice(PIECES) for _ in range(n))
    if rng.random() < 0.05:
        s = rng.choice([" ", "\n", "x", "1", "\u3000"]) * rng.randint(10, 200) + s
    return s


def variant(base, edit):
    from tokenizers import Tokenizer
    d = json.load(open(f"{FIX}/tok-{base}/tokenizer.json"))
    edit(d)
    return Tokenizer.from_str(json.dumps(d))


def gpt2(d):
    d["normalizer"] = None
    d["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                          "use_regex": True}


def digits_nfc(d):
    d["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFC"}]}
    d["pre_tokenizer"]["pretokenizers"][0]["individual_digits"] = False


def ignore_merges(d):
    d["model"]["ignore_merges"] = True


def main():
    import tokenizers
    from tokenizers import Tokenizer, AddedToken
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 800
    rng = random.Random(20241125)
    strings = [rand_string(rng) for _ in range(n)]
    toks = {k: Tokenizer.from_file(f"{FIX}/tok-{k}/tokenizer.json") for k in ("qwen2", "smol", "llama3")}
    toks["gpt2"] = variant("qwen2", gpt2)
    toks["smol_digits_nfc"] = variant("smol", digits_nfc)
    toks["llama3_ignore"] = variant("llama3", ignore_merges)
    added = variant("qwen2", ignore_merges)
    added.add_tokens([AddedToken("<tool>", lstrip=True, rstrip=True, normalized=False),
                      AddedToken("hello", single_word=True, normalized=True),
                      AddedToken("\u00e9", normalized=True),
                      AddedToken("foo", normalized=False)])
    added.add_special_tokens([AddedToken("<|im_", special=True, normalized=False)])
    toks["qwen2_added"] = added
    res = {"version": tokenizers.__version__, "strings": strings, "tokenizers": {},
           "ids": {}, "ids_nospecial": {}, "decoded": {}, "decoded_skip": {}}
    for name, tok in toks.items():
        res["tokenizers"][name] = json.loads(tok.to_str())
        ids = [e.ids for e in tok.encode_batch(strings, add_special_tokens=False)]
        dec = tok.decode_batch(ids, skip_special_tokens=False)
        skip = tok.decode_batch(ids, skip_special_tokens=True)
        tok.encode_special_tokens = True
        nosp = [e.ids for e in tok.encode_batch(strings, add_special_tokens=False)]
        tok.encode_special_tokens = False
        res["ids"][name] = ids
        res["ids_nospecial"][name] = [b if b != a else None for a, b in zip(ids, nosp)]
        res["decoded"][name] = [d if d != s else None for s, d in zip(strings, dec)]
        res["decoded_skip"][name] = [k if k != d else None for d, k in zip(dec, skip)]
        print(name, "done")
    with open(out, "w") as f:
        json.dump(res, f, ensure_ascii=False, separators=(",", ":"))
    print("tokenizers", tokenizers.__version__, "strings", len(strings))


if __name__ == "__main__":
    main()
