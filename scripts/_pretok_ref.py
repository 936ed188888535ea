import json, random, sys
sys.path.insert(0, "scripts")
from tok_fuzz_ref import rand_string
from tokenizers import pre_tokenizers, Regex
Q = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
L3 = Q.replace(r"\p{N}|", r"\p{N}{1,3}|")
G = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
rng = random.Random(7)
strings = ["'\u017fing", "'\u017f", "'\u017fx y", "I'\u017fa", "'\u212aa", "'\ufb06x", "'SSx", "'LLx", "'lLx"]
strings += [rand_string(rng) for _ in range(30000)]
out = {"strings": strings}
for name, pat in (("qwen2", Q), ("llama3", L3), ("gpt2", G)):
    pt = pre_tokenizers.Split(Regex(pat), behavior="isolated")
    out[name] = [[p for p, _ in pt.pre_tokenize_str(s)] for s in strings]
dg = pre_tokenizers.Digits(individual_digits=False)
out["digits"] = [[p for p, _ in dg.pre_tokenize_str(s)] for s in strings]
bl = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
print(out["qwen2"][:9])
json.dump(out, open(sys.argv[1], "w"), ensure_ascii=False)
