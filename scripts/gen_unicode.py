#!/usr/bin/env python3
"""Writes engine/unicode.c: the Unicode tables the tokenizer needs, as the
`tokenizers` library (0.23) sees Unicode, which is not one Unicode version:

  classes   letter (\\p{L}), number (\\p{N}) and White_Space (\\s) as its
            regex engine (Oniguruma) has them, and word characters as Rust's
            regex crate's \\w (for single_word added tokens): Unicode 16.0;
  numeric   the Digits pre-tokenizer's digits, Rust's char::is_numeric: the
            numbers of Unicode 17.0 (16.0's plus RUST_NUMERIC_17);
  NFC       combining classes, decompositions and compositions of its NFC
            normalizer (the unicode-normalization-alignments crate): Unicode
            9.0.  Newer combining marks (e.g. U+07FD) have class 0 there, and
            pairs composed since (e.g. U+11935 U+11930) stay apart.

tests/fixtures/tok_unicode.json (scripts/record_tok_unicode.py) records what
`tokenizers` does for every code point, and test_tok checks these tables
against it.  The classes come from PyPI's unicodedata2 16.0.0 in the Python
running this script; the NFC tables from a second Python whose own
unicodedata is Unicode 9.0 (Python 3.6), run on this same file:

    python3 -m venv /tmp/u16 && /tmp/u16/bin/pip install unicodedata2==16.0.0
    /tmp/u16/bin/python scripts/gen_unicode.py --nfc-python python3.6 [out]

Every table is sorted for binary search:
  classes   ranges of equal value: 1 letter, 2 number, 3 space, 0 other,
            plus WORD_FLAG (\\w) and NUMERIC_FLAG (Digits)
  ccc       canonical combining class, ranges of equal non-zero class
  decomp    full canonical decomposition of every character that has one
            (Hangul syllables excluded: the code decomposes them by formula)
  compose   primary composites: (first, second) -> composite, i.e. two-char
            canonical decompositions that are not composition exclusions
"""
import json
import subprocess
import sys

CLASS_VERSION, NFC_VERSION = "16.0.0", "9.0.0"
MAXCP = 0x110000
HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3

# White_Space as the regex engines define \s: Python has no White_Space
# property, so it is built from its definition (controls 9-13 and 0x85, plus
# the separators Zs/Zl/Zp) and checked against the published list.
WHITE_SPACE = {0x9, 0xA, 0xB, 0xC, 0xD, 0x85}
WHITE_SPACE_REF = {0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                   0x2028, 0x2029, 0x202F, 0x205F, 0x3000}

# Rust regex's Unicode \w: Alphabetic, marks, Nd, Pc and Join_Control.
# Alphabetic is L, Nl and Other_Alphabetic; Python lacks the latter, but
# apart from marks (already in M) it is only these circled/squared letters
# (PropList.txt).
OTHER_ALPHABETIC_SO = [(0x24B6, 0x24E9), (0x1F130, 0x1F149), (0x1F150, 0x1F169),
                       (0x1F170, 0x1F189)]
# Numbers Unicode 17.0 adds (Tolong Siki digits, Tangut numerals), which
# the Rust standard library behind `tokenizers`' Digits already knows.
RUST_NUMERIC_17 = [(0x11DE0, 0x11DE9), (0x16FF4, 0x16FF6)]
WORD_FLAG, NUMERIC_FLAG = 4, 8


def is_word(cp, cat):
    if cat[0] in "LM" or cat in ("Nd", "Nl", "Pc") or cp in (0x200C, 0x200D):
        return True
    return any(a <= cp <= b for a, b in OTHER_ALPHABETIC_SO)


def char_class(ud, cp):
    """1 letter, 2 number, 3 space, 0 other; plus WORD_FLAG and NUMERIC_FLAG."""
    cat = ud.category(chr(cp))
    word = WORD_FLAG if is_word(cp, cat) else 0
    numeric = NUMERIC_FLAG if cat[0] == "N" or any(a <= cp <= b for a, b in RUST_NUMERIC_17) else 0
    if cp in WHITE_SPACE or cat in ("Zs", "Zl", "Zp"):
        return 3
    if cat[0] == "L":
        return 1 | word
    if cat[0] == "N":
        return 2 | word | numeric
    return word | numeric


def ranges(value_of):
    """[(first, last, value)] for maximal runs of equal non-zero value."""
    out, start, cur = [], 0, 0
    for cp in range(MAXCP + 1):
        v = value_of(cp) if cp < MAXCP else 0
        if v != cur:
            if cur:
                out.append((start, cp - 1, cur))
            start, cur = cp, v
    return out


def nfc_tables():
    """ccc ranges, decompositions and compositions from this Python's own
    unicodedata (run as --nfc-json by the Python given as --nfc-python)."""
    import unicodedata as ud
    assert ud.unidata_version == NFC_VERSION, "NFC data must be Unicode %s, this Python has %s" % (
        NFC_VERSION, ud.unidata_version)

    def canonical_decomp(cp):
        d = ud.decomposition(chr(cp))
        if not d or d.startswith("<"):
            return None
        return [int(x, 16) for x in d.split()]

    ccc = ranges(lambda cp: ud.combining(chr(cp)))
    decomp, pool, compose = [], [], []
    for cp in range(MAXCP):
        if HANGUL_FIRST <= cp <= HANGUL_LAST or canonical_decomp(cp) is None:
            continue
        full = [ord(c) for c in ud.normalize("NFD", chr(cp))]
        decomp.append((cp, len(pool), len(full)))
        pool.extend(full)
        d = canonical_decomp(cp)
        # A composition exclusion (or non-starter decomposition) does not
        # survive NFC on its own; a primary composite does.
        if len(d) == 2 and ud.normalize("NFC", chr(cp)) == chr(cp):
            compose.append((d[0], d[1], cp))
    compose.sort()
    return {"version": ud.unidata_version, "ccc": ccc, "decomp": decomp, "pool": pool, "compose": compose}


def main():
    if sys.argv[1:] == ["--nfc-json"]:
        json.dump(nfc_tables(), sys.stdout)
        return
    args = sys.argv[1:]
    nfc_python = sys.executable
    if args[:1] == ["--nfc-python"]:
        nfc_python, args = args[1], args[2:]
    out_path = args[0] if args else "engine/unicode.c"
    try:
        import unicodedata2 as ud
    except ImportError:
        import unicodedata as ud
    assert ud.unidata_version == CLASS_VERSION, "classes must be Unicode %s, this Python has %s" % (
        CLASS_VERSION, ud.unidata_version)
    for a, b in OTHER_ALPHABETIC_SO:
        assert all(ud.category(chr(c)) == "So" for c in range(a, b + 1))
    for a, b in RUST_NUMERIC_17:
        assert all(ud.category(chr(c)) == "Cn" for c in range(a, b + 1))
    spaces = {cp for cp in range(MAXCP) if char_class(ud, cp) == 3}
    assert spaces == WHITE_SPACE_REF, sorted(spaces ^ WHITE_SPACE_REF)
    classes = ranges(lambda cp: char_class(ud, cp))
    nfc = json.loads(subprocess.run([nfc_python, __file__, "--nfc-json"], check=True,
                                    stdout=subprocess.PIPE).stdout)
    ccc, decomp, pool, compose = nfc["ccc"], nfc["decomp"], nfc["pool"], nfc["compose"]

    w = []
    w.append("/* unicode.c — GENERATED by scripts/gen_unicode.py: classes from Unicode "
             f"{ud.unidata_version},\n * NFC from Unicode {nfc['version']} (as the `tokenizers` "
             "library has them).  Do not edit; rerun the script. */\n")
    w.append('#include "unicode.h"\n\n')
    w.append("typedef struct { uint32_t first, last; uint8_t val; } uni_range;\n")
    w.append("typedef struct { uint32_t cp; uint16_t off; uint8_t len; } uni_decomp;\n")
    w.append("typedef struct { uint32_t a, b, c; } uni_pair;\n\n")

    def table(decl, rows, fmt, per_line):
        w.append(f"{decl} = {{\n")
        for i in range(0, len(rows), per_line):
            w.append("    " + " ".join(fmt(r) for r in rows[i:i + per_line]) + "\n")
        w.append("};\n\n")

    rng = lambda r: "{0x%X,0x%X,%d}," % tuple(r)
    table(f"static const uni_range class_tab[{len(classes)}]", classes, rng, 4)
    table(f"static const uni_range ccc_tab[{len(ccc)}]", ccc, rng, 4)
    assert len(pool) < 65536 and max(d[2] for d in decomp) < 256
    table(f"static const uni_decomp decomp_tab[{len(decomp)}]", decomp,
          lambda r: "{0x%X,%d,%d}," % tuple(r), 5)
    table(f"static const uint32_t decomp_pool[{len(pool)}]", pool, lambda v: "0x%X," % v, 10)
    table(f"static const uni_pair compose_tab[{len(compose)}]", compose,
          lambda r: "{0x%X,0x%X,0x%X}," % tuple(r), 4)

    w.append(LOOKUPS)
    with open(out_path, "w") as f:
        f.write("".join(w))
    print(f"{out_path}: {len(classes)} class ranges, {len(ccc)} ccc ranges, "
          f"{len(decomp)} decompositions ({len(pool)} code points), {len(compose)} compositions")


LOOKUPS = r"""#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Value of the range holding cp, 0 when none does. */
static int range_find(const uni_range *t, int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < t[mid].first) hi = mid - 1;
        else if (cp > t[mid].last) lo = mid + 1;
        else return t[mid].val;
    }
    return 0;
}

int eng_uni_class(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return ENG_UNI_LETTER;
        if (cp >= '0' && cp <= '9') return ENG_UNI_NUMBER;
        if (cp == ' ' || (cp >= 0x9 && cp <= 0xD)) return ENG_UNI_SPACE;
        return ENG_UNI_OTHER;
    }
    return range_find(class_tab, COUNT(class_tab), cp) & 3;
}

int eng_uni_is_numeric(uint32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    return (range_find(class_tab, COUNT(class_tab), cp) & 8) != 0;
}

int eng_uni_is_word(uint32_t cp) {
    if (cp < 0x80)
        return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9') || cp == '_';
    return (range_find(class_tab, COUNT(class_tab), cp) & 4) != 0;
}

int eng_uni_ccc(uint32_t cp) {
    if (cp < 0x300) return 0;
    return range_find(ccc_tab, COUNT(ccc_tab), cp);
}

const uint32_t *eng_uni_decomp(uint32_t cp, int *n) {
    int lo = 0, hi = COUNT(decomp_tab) - 1;
    if (cp < 0xC0) return NULL;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < decomp_tab[mid].cp) hi = mid - 1;
        else if (cp > decomp_tab[mid].cp) lo = mid + 1;
        else { *n = decomp_tab[mid].len; return decomp_pool + decomp_tab[mid].off; }
    }
    return NULL;
}

uint32_t eng_uni_compose_pair(uint32_t a, uint32_t b) {
    int lo = 0, hi = COUNT(compose_tab) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const uni_pair *p = &compose_tab[mid];
        if (a < p->a || (a == p->a && b < p->b)) hi = mid - 1;
        else if (a > p->a || b > p->b) lo = mid + 1;
        else return p->c;
    }
    return 0;
}
"""

if __name__ == "__main__":
    main()
