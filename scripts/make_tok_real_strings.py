#!/usr/bin/env python3
"""Writes tests/fixtures/tok_real_strings.json: the strings on which brisk's
tokenizer is compared with Hugging Face for the real tokenizers (SmolLM2,
Qwen3; ids recorded by scripts/record_tok_real.py, checked by
tests/test_tok_real.c).  Plain python3, run from the repository root:

    python3 scripts/make_tok_real_strings.py [SHARED_DIR]

The set (fixed seed, so re-running gives the same file):
  - every MATH-500 problem and a sample of solutions (LaTeX, digits);
  - WebWalkerQA questions and answers (Chinese and English), ParallelPrompt
    prompts (chat-style user text);
  - code: stretches of lines from this repository's own C, Python,
    JavaScript and Makefile sources, as of commit CODE_COMMIT (read with
    git, so that the set does not change with the sources);
  - hand-written cases: many languages and scripts, emoji sequences, runs of
    spaces/newlines/tabs, numbers, text that looks like chat markers and
    special tokens (whole, partial, spaced, nested), Unicode corners;
  - the 249 strings of tests/fixtures/tok_strings.json;
  - random mixtures of the pieces the pre-tokenizers split on, and of
    random code points from all planes (characters of recent Unicode
    versions, combining marks: the versions of `tokenizers`' tables);
  - last (so that the strings before them stay as they were): Gemma's
    markers and SentencePiece corners (<start_of_turn>, HTML-tag tokens,
    byte-token spellings and U+2581 typed as text), whole and glued.
Long texts are cut to at most 700 characters (on a character boundary) to
keep the recorded ids small."""
import fnmatch, glob, json, os, random, subprocess, sys

SHARED = sys.argv[1] if len(sys.argv) > 1 else "../shared"
OUT = "tests/fixtures/tok_real_strings.json"
MAXLEN = 700
CODE_COMMIT = "c569993"
rng = random.Random(20250601)


def cut(s):
    if len(s) <= MAXLEN:
        return s
    a = rng.randrange(0, len(s) - MAXLEN)
    return s[a:a + MAXLEN]


def jsonl(path, key):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l)[key] for l in f if l.strip()]


def jlist(path, key):
    with open(path, encoding="utf-8") as f:
        return [r[key] for r in json.load(f) if isinstance(r.get(key), str) and r[key]]


def datasets():
    math = f"{SHARED}/data/math500/test.jsonl"
    web = f"{SHARED}/data/webwalkerqa/test.json"
    rows = jsonl(math, "problem")                                   # all 500
    rows += rng.sample(jsonl(math, "solution"), 220)
    rows += rng.sample(jlist(web, "Question"), 320)
    rows += rng.sample([a for a in jlist(web, "answer")], 120)
    for path in sorted(glob.glob(f"{SHARED}/data/parallelprompt/lmsys_old/*.json")):
        rows += jlist(path, "original")
    return [cut(s) for s in rows]


def git(*args):
    return subprocess.run(["git", *args], check=True, capture_output=True).stdout.decode("utf-8", "replace")


def code():
    patterns = ("engine/*.c", "app/*.c", "scripts/*.py", "server/web/*.js", "tools/*.c", "Makefile")
    files = sorted(f for f in git("ls-tree", "-r", "--name-only", CODE_COMMIT).split("\n")
                   if any(fnmatch.fnmatch(f, p) for p in patterns))
    text = {}
    out = []
    for _ in range(220):
        path = rng.choice(files)
        if path not in text:
            text[path] = git("show", f"{CODE_COMMIT}:{path}")
        lines = text[path].split("\n")
        n = rng.randint(1, 14)
        a = rng.randrange(0, max(1, len(lines) - n))
        s = "\n".join(lines[a:a + n])
        if s.strip():
            out.append(cut(s))
    return out


LANGS = [
    "The quick brown fox jumps over the lazy dog.",
    "Portez ce vieux whisky au juge blond qui fume.",
    "Victor jagt zwölf Boxkämpfer quer über den großen Sylter Deich.",
    "El veloz murciélago hindú comía feliz cardillo y kiwi.",
    "À noite, vovô Kowalsky vê o ímã cair no pé do pingüim queixoso.",
    "Pchnąć w tę łódź jeża lub ośm skrzyń fig.",
    "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Árvíztűrő tükörfúrógép.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Жебракують філософи при ґанку церкви в Гадячі.",
    "Τάχιστη αλώπηξ βαφής ψημένη γη, δρασκελίζει υπέρ νωθρού κυνός.",
    "איך בלש תפס גמד רוצח עז קטנה?",
    "صِف خَلقَ خَودِ كَمِثلِ الشَمسِ إِذ بَزَغَت",
    "ژالهٔ بخار پیکر، چو مه آسمان را می‌پوشاند.",
    "ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले विष्णुवतार भगवान श्रीराम।",
    "আমার সোনার বাংলা, আমি তোমায় ভালোবাসি।",
    "யாமறிந்த மொழிகளிலே தமிழ்மொழி போல் இனிதாவது எங்கும் காணோம்.",
    "నేను తెలుగు మాట్లాడగలను.",
    "ನಾನು ಕನ್ನಡ ಮಾತನಾಡುತ್ತೇನೆ.",
    "เป็นมนุษย์สุดประเสริฐเลิศคุณค่า กว่าบรรดาฝูงสัตว์เดรัจฉาน",
    "ພາສາລາວ ເປັນພາສາທີ່ສວຍງາມ",
    "ខ្ញុំអាចញ៉ាំកញ្ចក់បាន",
    "Tiếng Việt có dấu: Tôi có thể ăn thủy tinh mà không hại gì.",
    "Saya boleh makan kaca dan ia tidak mencederakan saya.",
    "いろはにほへと ちりぬるを わかよたれそ つねならむ",
    "私はガラスを食べられます。それは私を傷つけません。",
    "다람쥐 헌 쳇바퀴에 타고파",
    "天地玄黄，宇宙洪荒。日月盈昃，辰宿列张。",
    "我能吞下玻璃而不伤身体。這是繁體中文的句子。",
    "Ծանր ճամպրուկը շալակին՝ նա մտավ տուն։",
    "მინას ვჭამ და არა მტკივა.",
    "Pijamalı hasta yağız şoföre çabucak güvendi.",
    "Þú getur étið gler án þess að meiða þig.",
    "Jeg kan spise glas, det gør ikke ondt på mig.",
    "Mogę jeść szkło i mi nie szkodzi.",
    "Ich kann Glas essen, ohne mir zu schaden.",
    "Mi povas manĝi vitron, ĝi ne damaĝas min.",
    "ᚠᛇᚻ᛫ᛒᛦᚦ᛫ᚠᚱᚩᚠᚢᚱ᛫ᚠᛁᚱᚪ᛫ᚷᛖᚻᚹᛦᛚᚳᚢᛗ",
    "ኢትዮጵያ አገሬ ናት።",
    "ᐊᓕᒍᖅ ᓂᕆᔭᕌᖓᒃᑯ ᓱᕋᙱᑦᑐᓐᓇᖅᑐᖓ",
    "𝕿𝖍𝖊 𝖖𝖚𝖎𝖈𝖐 𝖇𝖗𝖔𝖜𝖓 𝖋𝖔𝖝 and 𝓂𝒶𝓉𝒽 𝒶𝓁𝓅𝒽𝒶𝒷𝑒𝓉𝓈",
    "Ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ　１２３",
    "Zalgo: Z̸̢̛a̵͎̓l̴̰̈́g̶̱̾ŏ̷̧ text",
    "ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ ligatures; Å Å Å angstrom forms; Ω Ω ohm",
    "한글 자모: ᄒ ᅡ ᆫ and composed 한",
    "Vietnamese decomposed: Tie\u0302\u0301ng Vie\u0323\u0302t",
    "Devanagari nukta: क़ ख़ ग़ ज़ ड़ ढ़ फ़ य़ vs \u0915\u093c",
]

EMOJI = [
    "😀😃😄😁😆😅🤣😂🙂🙃", "👍👍🏻👍🏼👍🏽👍🏾👍🏿", "👨‍👩‍👧‍👦 👩‍❤️‍💋‍👨 🏳️‍🌈 🏴‍☠️",
    "🇯🇵🇺🇸🇫🇷🇩🇪🇨🇳🇮🇳", "#️⃣ *️⃣ 1️⃣ 🔟", "❤️ ❤ ♥️ ☺️ ☺", "🧑🏽‍💻 writes code 🐍🦀☕",
    "Emoji at end 🚀", "🚀 at start", "mid🚀dle", "🫠🫨🪿 new emoji", "🏴󠁧󠁢󠁳󠁣󠁴󠁿 tag sequence",
    "a😀b😀c😀d", "😀 😀  😀   😀", "\U0001F600\n\U0001F600\t\U0001F600",
]

MARKERS = [
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
    "<tool_response>", "</tool_response>", "<|fim_prefix|>", "<|repo_name|>", "<repo_name>", "<file_sep>",
    "<jupyter_code>", "<empty_output>", "<|vision_pad|>", "<|im_start", "im_start|>", "<|im_", "|>",
    "<|", "<|im_end", "<|im_end|", "< |im_end|>", "<|im_end |>", "<| im_start |>", "<<|im_start|>>",
    "<|im_start|><|im_start|>", "<think", "think>", "</think", "<think >", "< think>", "<THINK>",
    "<|IM_START|>", "<|endoftext|", "<|endoftext", "|endoftext|>", "<tool_call", "<|im_start|>|>",
]


def markers():
    out = list(MARKERS)
    out += [
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
        "<|im_start|>assistant\n",
        "<|im_start|>assistant\n<think>\nLet me think step by step.\n</think>\n\nThe answer is 4.<|im_end|>",
        "<think>\n\n</think>\n\n", "text<think>more</think>text", " <think> spaced </think> ",
        "<tool_call>\n{\"name\": \"calc\", \"arguments\": {\"expr\": \"2+2\"}}\n</tool_call>",
        "<tool_response>\n4\n</tool_response>", "<|endoftext|><|endoftext|>", "a<|endoftext|>b",
        "<|im_start|>user<|im_end|><|im_start|>assistant", "<|im_start|>\n<|im_end|>\n",
        "User wrote <|im_start|> in the middle of text", "unclosed <|im_start and <|im_end",
        "<|im_start|>user\nWhat does <|im_end|> mean?<|im_end|>", "</s><s>[INST] llama markers [/INST]",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>", "<|eot_id|>", "<repo_name>brisk<file_sep>x.c",
        "<jupyter_start><jupyter_code>print(1)<jupyter_output>1<empty_output>",
        "<filename>main.c\n<gh_stars>10\nint x;", "<issue_start>bug<issue_comment>fix<issue_closed>",
    ]
    for _ in range(60):   # markers glued to words, spaces, newlines and each other
        parts = [rng.choice(MARKERS + ["x", " ", "\n", "word", " word", "1", "é", "中", "  ", "\t", "'s"])
                 for _ in range(rng.randint(2, 8))]
        out.append("".join(parts))
    return out


def whitespace():
    out = [" " * n for n in (1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 64, 65, 100, 257)]
    out += ["\n" * n for n in (1, 2, 3, 4, 5, 8, 16, 33)]
    out += ["\t" * n for n in (1, 2, 3, 4, 8, 9)]
    out += ["x" + " " * n + "y" for n in (1, 2, 3, 4, 5, 8, 16, 33, 80)]
    out += ["x" + "\n" * n + "y" for n in (1, 2, 3, 5, 9)]
    out += [" " * n + "word" for n in (1, 2, 3, 4, 8, 12)]
    out += ["word" + " " * n for n in (1, 2, 3, 4, 8)]
    out += ["a \n b", "a\n \nb", " \n \n ", "\r\n\r\n", "\r\r\n\n", "line\r\nline\rline\nline",
            "\t \t \t", "  \t\n  ", "a\u00a0\u00a0b", "a\u2003\u2003b", "a\u3000\u3000b", "\u2028\u2029",
            "    def f():\n        return 1\n", "\n\n\n\n\ndeep\n\n\n\n", "trailing\n\n\n   ",
            " \u00a0 \u00a0", "\x0b\x0c vertical tab form feed", "\x85 next line", "end   ", "   ",
            "a" + " \t" * 20 + "b", "col1\tcol2\tcol3\n1\t2\t3\n", "x  \n  y", "x \r\n y"]
    return out


def digits():
    out = ["0", "7", "42", "123", "1234", "12345", "123456", "1234567", "1234567890" * 3,
           "3.14159265358979323846", "-0.5", "+1e-10", "6.022e23", "1,234,567.89", "1.234.567,89",
           "10^100", "2^10 = 1024", "0x7fffffff", "0b1011", "0o777", "007", "v1.2.3-rc4",
           "2024-06-01T12:34:56Z", "12:30 pm", "(555) 123-4567", "$1,000.00", "50%", "3/4", "1/2 + 1/3 = 5/6",
           "٠١٢٣٤٥٦٧٨٩", "۰۱۲۳۴۵۶۷۸۹", "०१२३४५६७८९", "０１２３４５６７８９", "¹²³ ₁₂₃ ½ ⅓ ¼",
           "Ⅰ Ⅱ Ⅲ Ⅳ Ⅻ", "①②③④⑤", "𝟎𝟏𝟐𝟑 math digits", "x1y22z333w4444", "a 1 b  22 c   333"]
    for _ in range(30):
        out.append(" ".join(str(rng.randrange(0, 10 ** rng.randint(1, 15))) for _ in range(rng.randint(1, 6))))
    return out


FUZZ = (list("abcXYZ019 '.,!?-_()[]{}<>|/\\\"$%^&*+=~`@#:;") +
        [" ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", "\u00a0", "\u3000", "\u200b", "\u200d",
         "'s", "'S", "'t", "'re", "'VE", "'ll", "'d", "'M", "\u017f", "12", "1234", "3.14",
         "\u00e9", "e\u0301", "A\u030a", "\u212b", "\u0958", "\ud55c", "\u1112\u1161\u11ab", "\u0301",
         "\u4e2d", "\u6587", "\u30a2", "\u03a9", "\u00df", "\u0130", "\u05d0", "\u0627", "\U0001f600",
         "\U0001f44d\U0001f3fd", "<|im_end|>", "<|im_start|>", "<|endoftext|>", "<think>", "</think>",
         "<|im_", "|>", "hello", " hello", "the", " the", "ing", "tion", "\\frac", "$", "$$", "\\boxed{"])


def fuzz():
    out = []
    for _ in range(320):
        n = rng.choice([2, 3, 5, 8, 13, 21, 40])
        out.append("".join(rng.choice(FUZZ) for _ in range(n)))
    return out


def any_char():
    while True:
        c = rng.choice([rng.randrange(0x80, 0x800), rng.randrange(0x800, 0x10000), rng.randrange(0x10000, 0x32000)])
        if not 0xD800 <= c <= 0xDFFF:
            return chr(c)


def unicode_mix():
    return ["".join(any_char() if rng.random() < 0.6 else rng.choice(FUZZ) for _ in range(rng.randint(2, 30)))
            for _ in range(150)]


GEMMA = [
    "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "[multimodal]",
    "<start_of_image>", "<end_of_image>", "<image_soft_token>", "<unused0>", "<unused99>", "<unused6241>",
    "<start_of_turn", "start_of_turn>", "<end_of_turn >", "< start_of_turn>", "<START_OF_TURN>",
    "<table><tr><td>1</td></tr></table>", "<b>bold</b> and <i>italic</i>", "<h1>Title</h1>\n<p>text</p>",
    "<code>x = 1</code>", "<s>x</s>", "<0x41>", "<0xFF><0x00>", "<0x0A>", "\u2581", "\u2581\u2581hello",
    "a\u2581b \u2581 c", "\u2581the\u2581end", "\t\tindented\n\t\t\tmore",
]


def gemma():
    out = list(GEMMA)
    out += [
        "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
        "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n",
        "<start_of_turn>model\n<start_of_image><image_soft_token><end_of_image>caption<end_of_turn>",
        "text<end_of_turn>more", "<eos><eos>", "a<pad>b<unk>c<mask>d",
    ]
    for _ in range(40):   # markers glued to words, spaces, newlines and each other
        parts = [rng.choice(GEMMA + ["x", " ", "\n", "word", " word", "1", "é", "中", "  ", "\t", "\U0001F600"])
                 for _ in range(rng.randint(2, 8))]
        out.append("".join(parts))
    return out


def main():
    with open("tests/fixtures/tok_strings.json", encoding="utf-8") as f:
        old = json.load(f)
    rows = datasets() + code() + LANGS + EMOJI + markers() + whitespace() + digits() + old + fuzz() + unicode_mix() + gemma()
    seen, uniq = set(), []
    for s in rows:
        if s not in seen:
            seen.add(s)
            uniq.append(s)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(uniq, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(len(uniq), "strings,", os.path.getsize(OUT), "bytes ->", OUT)


if __name__ == "__main__":
    main()
