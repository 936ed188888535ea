#!/usr/bin/env python3
"""Writes tests/fixtures/tok_strings.json: the strings whose token ids are
recorded from the reference `tokenizers` library (scripts/gen_fixtures.py).
Hand-written cases cover the pre-tokenizer's corners; the rest are drawn with
a fixed seed from the shared datasets (maths, web questions, multilingual)."""
import json, random, sys
shared = sys.argv[1] if len(sys.argv) > 1 else "../shared"
hand = [
    "Hello, world!", "hello world", " leading space", "trailing space ", "  two leading",
    "tabs\tand\ttabs", "new\nline", "CRLF\r\nline", "\n\n\nthree newlines", "   \n  \n",
    "a" * 40, " " * 17, "x" + " " * 9 + "y", "\t\t\t", "end with newline\n", "",
    "I'm sure you'll see they've gone, he'd said. It's John's.", "DON'T SHOUT, IT'S LOUD",
    "12345678901234567890", "3.14159 and 2.71828", "1,000,000 dollars", "year 2024-11-25",
    "x^2 + y^2 = z^2", "$\\frac{1}{2}$", "\\boxed{42}", "$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$",
    "\\left( \\sqrt{2} \\right)^{10}", "\\begin{align*} a &= b \\\\ c &= d \\end{align*}",
    "你好，世界！", "我们今天去公园散步。", "日本語のテキストです", "한국어 문장입니다",
    "Привет, мир!", "Ελληνικά γράμματα", "مرحبا بالعالم", "שלום עולם", "हिन्दी पाठ",
    "emoji 😀😃😄 test", "👍🏽 thumbs", "family 👨‍👩‍👧‍👦 zwj", "flags 🇫🇷🇩🇪", "♠♣♥♦ ★☆",
    "café naïve résumé", "e\u0301 combining acute", "Å vs A\u030a", "ﬁ ligature", "\u00a0nbsp\u00a0",
    "def f(x):\n    return x * 2\n", "int main(void) { return 0; }", "for (i = 0; i < n; i++) {}",
    "    indented four\n        eight", "if x == 1:\n\tpass", "a->b->c", "x += 1; y -= 2;",
    "<html><body>hi</body></html>", "{\"key\": [1, 2, 3]}", "https://example.com/a?b=c&d=e",
    "user@example.com", "C:\\Windows\\System32", "snake_case and camelCase and PascalCase",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>", "text<|im_end|>more", "<|im_start|><|im_end|>", "<|im_start", "|im_end|>",
    "!!!???...", "---===+++", "(((nested)))", "[a], {b}, <c>", "a.b.c.d", "...", "¿Qué?",
    "Ünïcödé", "ß straße", "İstanbul", "ǅ titlecase", "ℕ ℤ ℚ ℝ", "x₁ + x₂", "½ ¾ ⅓", "①②③",
    "٣٤٥ arabic digits", "१२३ devanagari digits", "１２３ fullwidth", "Ⅻ roman",
    "mixed中文and English混合", "a\u200bzero width", "\u3000ideographic space", "\x7f\x01ctrl",
]
rows = []
rng = random.Random(1234)
def lines_of(path, key):
    out = []
    with open(path) as f:
        if path.endswith(".jsonl"):
            for l in f: out.append(json.loads(l)[key])
        else:
            for r in json.load(f):
                v = r.get(key)
                if isinstance(v, str): out.append(v)
    return out
math = lines_of(f"{shared}/data/math500/test.jsonl", "problem") + lines_of(f"{shared}/data/math500/test.jsonl", "solution")
web = lines_of(f"{shared}/data/webwalkerqa/test.json", "Question")
pp = lines_of(f"{shared}/data/parallelprompt/lmsys_old/reading_comprehension_lmsys.json", "original")
for src, k in ((math, 60), (web, 50), (pp, 20)):
    for s in rng.sample(src, k):
        if len(s) > 600:
            a = rng.randrange(0, len(s) - 600); s = s[a:a + 600]
        rows.append(s)
# whitespace/digit stress built from pieces
pieces = ["a", " ", "  ", "\n", "\t", "1", "22", "333", "é", "中", "😀", ".", "'s", "Ab", "\r\n", "x "]
for i in range(30):
    rows.append("".join(rng.choice(pieces) for _ in range(rng.randrange(3, 25))))
allrows = hand + rows
json.dump(allrows, open("tests/fixtures/tok_strings.json", "w"), ensure_ascii=False, indent=0)
print(len(allrows), "strings")
