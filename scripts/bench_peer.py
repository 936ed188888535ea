#!/usr/bin/env python3
"""The transformers peer for benchmarks/bench_cuda.c, and the random-weight
models both run on (no real checkpoints are reachable from the GPU machine).

    python3 scripts/bench_peer.py make OUT_DIR {qwen2.5-0.5b,qwen2.5-1.5b} TOKENIZER_JSON
        Qwen2ForCausalLM with the real model's config, bf16 weights drawn
        from a fixed seed (transformers' own initialisation), saved as
        safetensors with the given tokenizer.json (ids beyond it are fine).

    python3 scripts/bench_peer.py bench MODEL_DIR|FILE.gguf --out FILE
            [--batches 1,8,32,64,256] [--prompt 128] [--steps 32]
            [--compile-batches 1,32] [--compile-budget 240]
            [--device cuda|cpu] [--dtype bfloat16|float32] [--threads N]
        Decode tokens/s of model.generate (bf16, greedy, static cache, SDPA
        attention) at each batch size: every sequence gets --prompt random
        tokens; the time of a generate() of 1 new token is subtracted from
        one of 1 + --steps tokens (median of 2 each), so prefill is not
        counted.  "eager" disables transformers' automatic torch.compile;
        "compiled" leaves it on (mode reduce-overhead, CUDA graphs) for the
        --compile-batches, stopping once --compile-budget seconds are spent.
        A .gguf file is loaded through transformers' GGUF reader, which
        dequantizes it (the same weights brisk computes with).  On the CPU
        (--device cpu) the cache is dynamic and nothing is compiled.
        Writes JSON."""
import argparse, json, os, shutil, sys, time

CONFIGS = {
    # Qwen/Qwen2.5-0.5B-Instruct and Qwen/Qwen2.5-1.5B-Instruct config.json
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2),
    "qwen2.5-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2),
}
COMMON = dict(vocab_size=151936, max_position_embeddings=32768, rms_norm_eps=1e-6,
              rope_theta=1000000.0, tie_word_embeddings=True, bos_token_id=151643,
              eos_token_id=151645, hidden_act="silu", use_sliding_window=False,
              sliding_window=32768, max_window_layers=21, attention_dropout=0.0)


def make(out_dir, which, tokenizer):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    cfg = Qwen2Config(**CONFIGS[which], **COMMON)
    torch.manual_seed(0)
    t0 = time.time()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(dev):
        m = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    os.makedirs(out_dir, exist_ok=True)
    m.save_pretrained(out_dir)
    shutil.copy(tokenizer, os.path.join(out_dir, "tokenizer.json"))
    n = sum(p.numel() for p in m.parameters())
    print(f"{which}: {n / 1e9:.3f} B parameters written to {out_dir} in {time.time() - t0:.1f} s",
          flush=True)


def sync(dev):
    import torch
    if dev == "cuda":
        torch.cuda.synchronize()


def timed_generate(model, ids, new, eager):
    dev = ids.device.type
    sync(dev)
    t0 = time.perf_counter()
    import torch
    extra = {"cache_implementation": "static"} if dev == "cuda" else {}
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=new, min_new_tokens=new, disable_compile=eager,
                             pad_token_id=0, **extra)
    sync(dev)
    assert out.shape[1] == ids.shape[1] + new
    return time.perf_counter() - t0


def decode_rate(model, vocab, batch, prompt, steps, eager, dev="cuda"):
    import torch
    g = torch.Generator(device=dev).manual_seed(batch)
    ids = torch.randint(0, vocab, (batch, prompt), device=dev, generator=g)
    timed_generate(model, ids, 1, eager)             # warm-up (compiles when not eager)
    timed_generate(model, ids, 1 + steps, eager)
    t1 = sorted(timed_generate(model, ids, 1, eager) for _ in range(2))[0]
    tn = sorted(timed_generate(model, ids, 1 + steps, eager) for _ in range(2))[0]
    dt = max(tn - t1, 1e-9)
    return {"batch": batch, "tok_s": batch * steps / dt, "step_ms": 1e3 * dt / steps,
            "mode": "eager" if eager else "compiled"}


def bench(a):
    import torch, transformers
    from transformers import AutoModelForCausalLM
    batches = [int(x) for x in a.batches.split(",") if x]
    cbatches = [int(x) for x in a.compile_batches.split(",") if x]
    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.time()
    path, kw = a.model_dir, {}
    if path.endswith(".gguf"):
        path, kw["gguf_file"] = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, a.dtype),
                                                 attn_implementation="sdpa", **kw).to(a.device).eval()
    vocab = model.config.vocab_size
    print(f"loaded {a.model_dir} in {time.time() - t0:.1f} s", flush=True)
    dev_name = torch.cuda.get_device_name() if a.device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    res = {"model": os.path.basename(a.model_dir.rstrip("/")), "device": dev_name, "dtype": a.dtype,
           "torch": torch.__version__, "transformers": transformers.__version__,
           "prompt": a.prompt, "steps": a.steps, "decode": [], "compile": {}}
    def save():   # after every result, so a run stopped by a timeout keeps what it measured
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    for b in batches:
        try:
            r = decode_rate(model, vocab, b, a.prompt, a.steps, True, a.device)
        except Exception as e:  # e.g. out of memory at a large batch
            r = {"batch": b, "mode": "eager", "error": repr(e)[:300]}
        res["decode"].append(r)
        print(json.dumps(r), flush=True)
        save()
    spent, start = 0.0, time.time()
    for b in cbatches:
        if spent > a.compile_budget:
            res["compile"][str(b)] = "skipped: budget spent"
            continue
        try:
            r = decode_rate(model, vocab, b, a.prompt, a.steps, False, a.device)
            res["compile"][str(b)] = "ok"
        except Exception as e:
            r = {"batch": b, "mode": "compiled", "error": repr(e)[:300]}
            res["compile"][str(b)] = "failed"
        spent = time.time() - start
        r["seconds_incl_compile"] = spent
        res["decode"].append(r)
        print(json.dumps(r), flush=True)
        save()
    save()
    print("wrote", a.out)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make")
    mk.add_argument("out_dir")
    mk.add_argument("which", choices=sorted(CONFIGS))
    mk.add_argument("tokenizer")
    bp = sub.add_parser("bench")
    bp.add_argument("model_dir")
    bp.add_argument("--out", required=True)
    bp.add_argument("--batches", default="1,8,32,64,256", help="eager runs ('' for none)")
    bp.add_argument("--prompt", type=int, default=128)
    bp.add_argument("--steps", type=int, default=32)
    bp.add_argument("--compile-batches", default="1,32")
    bp.add_argument("--compile-budget", type=float, default=240)
    bp.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    bp.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    bp.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    a = ap.parse_args()
    if a.cmd == "make":
        make(a.out_dir, a.which, a.tokenizer)
    else:
        bench(a)


if __name__ == "__main__":
    sys.exit(main())
