#!/usr/bin/env python3
"""Records how the `tokenizers` library classifies and normalizes every code
point, for tests/test_tok.c (test_unicode), which checks engine/unicode.c
(scripts/gen_unicode.py) against it code point by code point:

    python3 scripts/record_tok_unicode.py     (with tokenizers; from the repo root)

writes tests/fixtures/tok_unicode.json:
  "version"   tokenizers' version
  "letter", "number", "space"
              [first, last] ranges of the code points that the Split
              pre-tokenizer's regexes (Oniguruma) match with \\p{L}, \\p{N}, \\s
  "numeric"   ... that the Digits pre-tokenizer takes for digits (Rust's
              char::is_numeric)
  "word"      ... that keep a single_word added token from matching next to
              them (a word character, \\w of Rust's regex crate)
  "nfc_one"   {code point: NFC of that character alone}, where it changes
  "nfc_mark"  {code point c: NFC of "a" c U+0334}, where it changes (the
              canonical ordering against a combining class 1 mark, and
              compositions with "a")
  "nfc_pair"  [[a, b, NFC of "a b"], ...] for the two parts a b of every
              canonical decomposition of Unicode 16 (unicodedata2 16.0.0)."""
import json, sys

CPS = [c for c in range(0x110000) if not (0xD800 <= c <= 0xDFFF)]


def ranges(cps):
    out = []
    for c in sorted(cps):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def matched(regex):
    """Code points that the regex matches, as a Split pre-tokenizer."""
    from tokenizers import pre_tokenizers, Regex
    s = "\x00".join(chr(c) for c in CPS)   # \x00 is in none of the classes
    kept = set()
    for piece, _ in pre_tokenizers.Split(Regex(regex), behavior="removed").pre_tokenize_str(s):
        kept.update(ord(ch) for ch in piece)
    return [c for c in CPS if c not in kept]


def digits():
    from tokenizers import pre_tokenizers
    s = "\x00".join(chr(c) for c in CPS)
    pieces = pre_tokenizers.Digits(individual_digits=False).pre_tokenize_str(s)
    return [ord(p) for p, _ in pieces if len(p) == 1 and p != "\x00"]


def word_chars():
    """A single_word added token "zq" matches in c + "zq" only when c is not
    a word character."""
    from tokenizers import Tokenizer, models, AddedToken
    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.add_tokens([AddedToken("zq", single_word=True, normalized=False)])
    zq = tok.token_to_id("zq")
    texts = [chr(c) + "zq" for c in CPS]
    return [c for c, e in zip(CPS, tok.encode_batch(texts, add_special_tokens=False)) if zq not in e.ids]


def pairs16():
    """Canonical two-character decompositions of Unicode 16 (unicodedata2)."""
    import unicodedata2 as ud
    assert ud.unidata_version == "16.0.0", ud.unidata_version
    out = []
    for c in CPS:
        d = ud.decomposition(chr(c))
        if d and not d.startswith("<") and len(d.split()) == 2:
            a, b = (int(x, 16) for x in d.split())
            out.append((a, b, c))
    return out


def main():
    import tokenizers
    from tokenizers import normalizers
    nfc = normalizers.NFC()
    res = {"version": tokenizers.__version__,
           "letter": ranges(matched(r"\p{L}")), "number": ranges(matched(r"\p{N}")),
           "space": ranges(matched(r"\s")), "numeric": ranges(digits()), "word": ranges(word_chars())}
    one, mark = {}, {}
    for c in CPS:
        n = nfc.normalize_str(chr(c))
        if n != chr(c):
            one[c] = n
        s = "a" + chr(c) + "\u0334"
        n = nfc.normalize_str(s)
        if n != s:
            mark[c] = n
    res["nfc_one"], res["nfc_mark"] = one, mark
    res["nfc_pair"] = [[a, b, nfc.normalize_str(chr(a) + chr(b))] for a, b, c in pairs16()]
    out = "tests/fixtures/tok_unicode.json"
    with open(out, "w", encoding="utf-8") as f:
        json.dump(res, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(out, {k: len(v) for k, v in res.items() if k != "version"})


if __name__ == "__main__":
    main()
