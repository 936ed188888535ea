#!/usr/bin/env python3
"""Generates brisk's test fixtures with the reference implementations
(Hugging Face `tokenizers` and `transformers`).  Run on the device machine:

    python3 scripts/gen_fixtures.py DATA_DIR OUT_DIR [NAME ...]

NAMEs (default: all): tok, tiny-qwen2, tiny-llama, tiny-qwen3, tiny-gemma3.
tiny-qwen3 and tiny-gemma3 alone need only torch on the CPU (they reuse
OUT_DIR/tok-qwen2/tokenizer.json when the tokenizers are not trained in the
same run; training is seeded, so either way gives the same tokenizer).
Writes, under OUT_DIR:
  tok-qwen2/tokenizer.json, tok-smol/tokenizer.json, tok-llama3/tokenizer.json
      byte-level BPE tokenizers trained here on the shared datasets, with the
      pre-tokenizers of Qwen2.5, SmolLM2 and Llama 3 respectively;
  tok_ids_<name>.json      reference ids + decoded text for tok_strings.json;
  tiny-qwen2/              Qwen2ForCausalLM, f32, tied embeddings, q/k/v bias;
  tiny-qwen2-f16/          the same weights saved as f16;
  tiny-llama/              LlamaForCausalLM, bf16, untied, GQA 4:1, 2 shards;
  tiny-qwen3/              Qwen3ForCausalLM, bf16, untied, q/k norms, head_dim
                           16 (not hidden / heads = 8), GQA 2:1;
  tiny-gemma3/             Gemma3ForCausalLM, bf16, tied, 6 layers (5 sliding
                           with window 6 and RoPE base 1e4, then one global
                           with base 1e6 and linear scaling 8), head_dim 32,
                           query_pre_attn_scalar 24, GQA 2:1;
  (all four use the tok-qwen2 tokenizer)
  <model>/ref.json + ref_logits.bin  prompts, greedy continuations and
      logits (float64 reference, stored f32) at every position.
Everything is seeded: re-running gives the same files."""
import json, os, sys, struct
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, normalizers, Regex

DATA, OUT = sys.argv[1], sys.argv[2]
ALL = ["tok", "tiny-qwen2", "tiny-llama", "tiny-qwen3", "tiny-gemma3"]
WANT = sys.argv[3:] or ALL
assert all(w in ALL for w in WANT), f"names: {ALL}"
os.makedirs(OUT, exist_ok=True)
torch.set_num_threads(2)
QWEN_RE = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
LLAMA3_RE = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

def corpus():
    for l in open(f"{DATA}/math500/test.jsonl"):
        r = json.loads(l); yield r["problem"]; yield r["solution"]
    for r in json.load(open(f"{DATA}/webwalkerqa/test.json")):
        yield r["Question"]; yield str(r.get("answer", ""))
    for fn in os.listdir(f"{DATA}/parallelprompt/lmsys_old"):
        for r in json.load(open(f"{DATA}/parallelprompt/lmsys_old/{fn}")):
            yield r["original"]

def train(kind):
    tok = Tokenizer(models.BPE())
    bl = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    if kind == "qwen2":
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN_RE), behavior="isolated", invert=False), bl])
    elif kind == "llama3":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated", invert=False), bl])
    else:  # smol: SmolLM2 / StarCoder style
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=1024, show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), tr)
    tok.add_special_tokens(SPECIALS)
    return tok

strings = json.load(open(os.path.join(os.path.dirname(__file__), "../tests/fixtures/tok_strings.json")))
toks = {}
TRAIN = any(w in WANT for w in ("tok", "tiny-qwen2", "tiny-llama"))
for kind in ("qwen2", "smol", "llama3") if TRAIN else ():
    tok = train(kind); toks[kind] = tok
    os.makedirs(f"{OUT}/tok-{kind}", exist_ok=True)
    tok.save(f"{OUT}/tok-{kind}/tokenizer.json")
    rows = []
    for s in strings:
        ids = tok.encode(s, add_special_tokens=False).ids
        rows.append({"text": s, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    json.dump(rows, open(f"{OUT}/tok_ids_{kind}.json", "w"), ensure_ascii=False)
    print(kind, "vocab", tok.get_vocab_size(), "strings", len(rows))

def init_(model, seed, norm_center=1.0):
    """norm_center: 0 for Gemma, whose RMSNorm multiplies by (1 + weight)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(norm_center + 0.1 * torch.randn(p.shape, generator=g))
            elif n.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif "embed" in n or "lm_head" in n:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)

PROMPTS = ["The quick brown fox jumps over the lazy dog.",
           "<|im_start|>user\nWhat is $\\frac{1}{2}+\\frac{1}{3}$?<|im_end|>\n<|im_start|>assistant\n",
           "数学题：12345 + 678 = ?",
           "a"]

def record(model_dir, tok, n_gen=16):
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64, attn_implementation="eager").eval()
    meta, blobs, off = [], [], 0
    for p in PROMPTS:
        ids = tok.encode(p, add_special_tokens=False).ids
        with torch.no_grad():
            out = m.generate(torch.tensor([ids]), max_new_tokens=n_gen, do_sample=False,
                             min_new_tokens=n_gen, pad_token_id=0)
            full = out[0].tolist()
            logits = m(torch.tensor([full])).logits[0]        # [len(full)][vocab]
        # greedy continuation must be the argmax of the recorded logits
        for j in range(len(ids), len(full)):
            assert int(logits[j - 1].argmax()) == full[j]
        blobs.append(logits.float().numpy().tobytes())
        meta.append({"prompt": p, "ids": full, "n_prompt": len(ids), "row_offset": off,
                     "text": tok.decode(full[len(ids):], skip_special_tokens=False)})
        off += len(full)
    json.dump({"vocab": m.config.vocab_size, "rows": off, "prompts": meta},
              open(f"{model_dir}/ref.json", "w"), ensure_ascii=False, indent=1)
    open(f"{model_dir}/ref_logits.bin", "wb").write(b"".join(blobs))
    print(model_dir, "rows", off)

from transformers import Qwen2Config, Qwen2ForCausalLM, LlamaConfig, LlamaForCausalLM
if "tiny-qwen2" in WANT:
    qt = toks["qwen2"]; V = ((qt.get_vocab_size() + 63) // 64) * 64
    cfg = Qwen2Config(vocab_size=V, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=True,
                      bos_token_id=qt.token_to_id("<|endoftext|>"), eos_token_id=qt.token_to_id("<|im_end|>"))
    m = Qwen2ForCausalLM(cfg); init_(m, 1)
    d = f"{OUT}/tiny-qwen2"; m.to(torch.float32).save_pretrained(d); qt.save(f"{d}/tokenizer.json")
    record(d, qt)
    d16 = f"{OUT}/tiny-qwen2-f16"; m.to(torch.float16).save_pretrained(d16); qt.save(f"{d16}/tokenizer.json")

if "tiny-llama" in WANT:
    st = toks["smol"]; V = ((st.get_vocab_size() + 63) // 64) * 64
    cfg = LlamaConfig(vocab_size=V, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=1024,
                      rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=False,
                      bos_token_id=st.token_to_id("<|im_start|>"), eos_token_id=st.token_to_id("<|im_end|>"))
    m = LlamaForCausalLM(cfg); init_(m, 2)
    d = f"{OUT}/tiny-llama"; m.to(torch.bfloat16).save_pretrained(d, max_shard_size="200KB"); st.save(f"{d}/tokenizer.json")
    record(d, st)

if "qwen2" not in toks and any(w in WANT for w in ("tiny-qwen3", "tiny-gemma3")):
    toks["qwen2"] = Tokenizer.from_file(f"{OUT}/tok-qwen2/tokenizer.json")

if "tiny-qwen3" in WANT:
    from transformers import Qwen3Config, Qwen3ForCausalLM
    qt = toks["qwen2"]; V = ((qt.get_vocab_size() + 63) // 64) * 64
    cfg = Qwen3Config(vocab_size=V, hidden_size=32, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                      max_position_embeddings=1024, rms_norm_eps=1e-6, rope_theta=1000000.0,
                      tie_word_embeddings=False, bos_token_id=qt.token_to_id("<|endoftext|>"),
                      eos_token_id=qt.token_to_id("<|im_end|>"))
    m = Qwen3ForCausalLM(cfg); init_(m, 3)
    d = f"{OUT}/tiny-qwen3"; m.to(torch.bfloat16).save_pretrained(d); qt.save(f"{d}/tokenizer.json")
    record(d, qt)

if "tiny-gemma3" in WANT:
    from transformers import Gemma3TextConfig, Gemma3ForCausalLM
    qt = toks["qwen2"]; V = ((qt.get_vocab_size() + 63) // 64) * 64
    cfg = Gemma3TextConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=6,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                           query_pre_attn_scalar=24, sliding_window=6, max_position_embeddings=1024,
                           rms_norm_eps=1e-6, tie_word_embeddings=True,
                           rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0,
                                                               "rope_theta": 1000000.0},
                                            "sliding_attention": {"rope_type": "default",
                                                                  "rope_theta": 10000.0}},
                           bos_token_id=qt.token_to_id("<|endoftext|>"),
                           eos_token_id=[qt.token_to_id("<|im_end|>")], pad_token_id=0)
    assert cfg.layer_types == ["sliding_attention"] * 5 + ["full_attention"], cfg.layer_types
    m = Gemma3ForCausalLM(cfg); init_(m, 4, norm_center=0.0)
    d = f"{OUT}/tiny-gemma3"; m.to(torch.bfloat16).save_pretrained(d); qt.save(f"{d}/tokenizer.json")
    record(d, qt)

for r, _, fs in os.walk(OUT):
    for f in fs:
        p = os.path.join(r, f); print(os.path.getsize(p), p)
