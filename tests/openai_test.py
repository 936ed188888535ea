"""The OpenAI-compatible API of `brisk serve` through clients nobody here
wrote: the official `openai` package (PyPI) and curl.  Usage:
openai_test.py BRISK_BINARY MODEL_DIR, run with a Python that has `openai`
(scripts/deps.sh makes one in ~/.cache/brisk/venv).  Prints one line per
check and a closing "N passed, N failed, N skipped"."""
import asyncio, json, os, re, signal, subprocess, sys, tempfile, time, urllib.request
import openai

BRISK, MODEL = sys.argv[1], sys.argv[2]
MODEL_ID = os.path.basename(MODEL.rstrip("/"))
results = []
procs = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else "  " + str(detail)[:600]), flush=True)


def start(*extra):
    fd, log = tempfile.mkstemp(prefix="brisk_oai_log_")
    os.close(fd)
    p = subprocess.Popen([BRISK, "serve", "--model", MODEL, "--port", "0", "--log", log, *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    m = re.search(r"http://\S+:(\d+)/", line)
    if not m:
        raise RuntimeError("server did not start: " + line + p.stderr.read())
    p.port, p.log = int(m.group(1)), log
    procs.append(p)
    return p


def client(p, **kw):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{p.port}/v1", api_key=kw.pop("api_key", "none"),
                         max_retries=0, timeout=60, **kw)


def aclient(p):
    return openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{p.port}/v1", api_key="none", max_retries=0, timeout=120)


MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say something about cats."}]


def stream_text(stream):
    """Content of each choice, finish reasons, usage and chunk count of a chat stream."""
    text, finish, usage, n, roles = {}, {}, None, 0, {}
    for ch in stream:
        n += 1
        if ch.usage:
            usage = ch.usage
        for c in ch.choices:
            if c.delta.role:
                roles[c.index] = c.delta.role
            text[c.index] = text.get(c.index, "") + (c.delta.content or "")
            if c.finish_reason:
                finish[c.index] = c.finish_reason
    return text, finish, usage, n, roles


def t_basic(p):
    c = client(p)
    models = c.models.list()
    check("models.list names the served model", [m.id for m in models.data] == [MODEL_ID], models)
    check("models.retrieve of that model", c.models.retrieve(MODEL_ID).id == MODEL_ID)
    r = c.chat.completions.create(model=MODEL_ID, messages=MSGS, max_tokens=12, temperature=0)
    ch = r.choices[0]
    check("chat: one choice, assistant content, finish stop/length, usage",
          len(r.choices) == 1 and ch.message.role == "assistant" and isinstance(ch.message.content, str)
          and ch.finish_reason in ("stop", "length") and r.usage.completion_tokens >= 1
          and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
          and r.object == "chat.completion" and r.id.startswith("chatcmpl-"), r)
    s = c.chat.completions.create(model=MODEL_ID, messages=MSGS, max_tokens=12, temperature=0, stream=True,
                                  stream_options={"include_usage": True})
    text, finish, usage, n, roles = stream_text(s)
    check("chat stream: same text as the whole response, role first, finish, usage in the last chunk",
          text.get(0) == ch.message.content and finish.get(0) == ch.finish_reason and roles == {0: "assistant"}
          and usage and usage.completion_tokens == r.usage.completion_tokens and n >= 2, (text, finish, usage, ch))
    r = c.chat.completions.create(model=MODEL_ID, messages=MSGS, max_completion_tokens=3, temperature=0)
    check("max_completion_tokens limits the answer (finish length)",
          r.usage.completion_tokens == 3 and r.choices[0].finish_reason == "length", r)
    # n > 1: choices forked from one prefilled prompt
    r = c.chat.completions.create(model=MODEL_ID, messages=MSGS, max_tokens=8, n=3, temperature=1.0, seed=7)
    check("n=3: three choices, indexed 0-2, each with content",
          [x.index for x in r.choices] == [0, 1, 2] and all(isinstance(x.message.content, str) for x in r.choices)
          and len({x.message.content for x in r.choices}) >= 2 and r.usage.completion_tokens >= 3, r)
    s = c.chat.completions.create(model=MODEL_ID, messages=MSGS, max_tokens=8, n=2, temperature=1.0, seed=7,
                                  stream=True)
    text, finish, _, _, roles = stream_text(s)
    check("n=2 stream: both choices stream and finish", sorted(text) == [0, 1] and sorted(finish) == [0, 1]
          and roles == {0: "assistant", 1: "assistant"}, (text, finish))
    # seed: same seed, same sample
    a = c.chat.completions.create(model=MODEL_ID, messages=MSGS, max_tokens=10, temperature=1.0, top_p=0.9, seed=11)
    b = c.chat.completions.create(model=MODEL_ID, messages=MSGS, max_tokens=10, temperature=1.0, top_p=0.9, seed=11)
    check("seed: the same seed gives the same sample", a.choices[0].message.content == b.choices[0].message.content,
          (a.choices[0].message.content, b.choices[0].message.content))
    # stop
    full = c.chat.completions.create(model=MODEL_ID, messages=MSGS, max_tokens=12, temperature=0).choices[0].message.content
    stop = full[4:7]
    r = c.chat.completions.create(model=MODEL_ID, messages=MSGS, max_tokens=12, temperature=0, stop=[stop])
    check("stop: the answer ends before the stop string with finish stop",
          r.choices[0].message.content == full[:full.index(stop)] and r.choices[0].finish_reason == "stop",
          (full, stop, r.choices[0]))
    # logprobs
    r = c.chat.completions.create(model=MODEL_ID, messages=MSGS, max_tokens=4, temperature=0, logprobs=True,
                                  top_logprobs=2)
    lp = r.choices[0].logprobs.content
    check("logprobs: one entry per token with 2 alternatives, the greedy token first",
          len(lp) == 4 and all(len(e.top_logprobs) == 2 and e.top_logprobs[0].token == e.token
                               and e.logprob <= 0 for e in lp), lp)
    # completions
    r = c.completions.create(model=MODEL_ID, prompt="The quick brown fox", max_tokens=12, temperature=0)
    gen = subprocess.run([BRISK, "generate", "--model", MODEL, "--prompt", "The quick brown fox", "--max-tokens", "12"],
                         capture_output=True, text=True).stdout.rstrip("\n")
    check("completions: text_completion equal to `brisk generate`",
          r.object == "text_completion" and r.choices[0].text == gen and r.usage.prompt_tokens > 0, (r, gen))
    s = c.completions.create(model=MODEL_ID, prompt="The quick brown fox", max_tokens=12, temperature=0, stream=True)
    text = "".join(x.choices[0].text for x in s if x.choices)
    check("completions stream: the same text", text == gen, (text, gen))
    r = c.completions.create(model=MODEL_ID, prompt="The quick brown fox", max_tokens=3, temperature=0, logprobs=2)
    check("completions logprobs: tokens, token_logprobs, top_logprobs of 2",
          len(r.choices[0].logprobs.tokens) == 3 and len(r.choices[0].logprobs.top_logprobs[0]) >= 1, r.choices[0].logprobs)


CALL = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n</tool_call>'
        '<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call><|im_end|>')
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                         "required": ["city"]}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object",
          "properties": {"tz": {"type": "string"}}}}}]


def t_tools(p):
    """Tool calls (the model's output forced with script: --allow-script) come
    back as OpenAI tool_calls, streamed as argument deltas."""
    c = client(p)
    r = c.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Weather in Paris?"}],
                                  tools=TOOLS, max_tokens=200, extra_body={"script": "Let me check." + CALL})
    m = r.choices[0].message
    calls = [(t.function.name, json.loads(t.function.arguments), t.type) for t in (m.tool_calls or [])]
    check("tools: two tool calls with their JSON arguments, finish tool_calls, the text before them as content",
          calls == [("get_weather", {"city": "Paris", "days": 3}, "function"), ("get_time", {"tz": "CET"}, "function")]
          and r.choices[0].finish_reason == "tool_calls" and m.content == "Let me check."
          and len({t.id for t in m.tool_calls}) == 2, r)
    s = c.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Weather in Paris?"}],
                                  tools=TOOLS, max_tokens=200, stream=True, extra_body={"script": CALL})
    acc, finish, arg_chunks = {}, None, 0
    for ch in s:
        for cc in ch.choices:
            finish = cc.finish_reason or finish
            for d in cc.delta.tool_calls or []:
                a = acc.setdefault(d.index, {"id": None, "name": "", "args": ""})
                if d.id: a["id"] = d.id
                if d.function and d.function.name: a["name"] += d.function.name
                if d.function and d.function.arguments:
                    a["args"] += d.function.arguments
                    arg_chunks += 1
    got = [(acc[i]["name"], json.loads(acc[i]["args"])) for i in sorted(acc)]
    check("tools stream: deltas (id and name first, arguments in pieces) add up to the calls",
          got == [("get_weather", {"city": "Paris", "days": 3}), ("get_time", {"tz": "CET"})]
          and all(acc[i]["id"] for i in acc) and arg_chunks >= 4 and finish == "tool_calls", (acc, finish))
    # the conversation goes on with the call and its result (rendered by the chat template)
    r2 = c.chat.completions.create(model=MODEL_ID, max_tokens=5, tools=TOOLS, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny, 21 C"}])
    check("a tool call and its result in the messages are accepted", r2.choices[0].message.role == "assistant", r2)
    # tool_choice naming a function: the reply starts as a call to it
    r3 = c.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Time?"}], tools=TOOLS,
                                   tool_choice={"type": "function", "function": {"name": "get_time"}}, max_tokens=60,
                                   extra_body={"script": '{"tz": "UTC"}}\n</tool_call><|im_end|>'})
    tc = r3.choices[0].message.tool_calls
    check("tool_choice names get_time: the reply is that call",
          tc and tc[0].function.name == "get_time" and json.loads(tc[0].function.arguments) == {"tz": "UTC"}
          and r3.choices[0].finish_reason == "tool_calls", r3)
    # reasoning: a <think> block comes back as reasoning_content
    r4 = c.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "2+2?"}], max_tokens=60,
                                   extra_body={"script": "<think>\nTwo and two make four.\n</think>\n\nIt is 4.<|im_end|>"})
    msg = r4.choices[0].message
    check("reasoning: the <think> block is reasoning_content, the rest is content",
          getattr(msg, "reasoning_content", None) == "\nTwo and two make four.\n" and msg.content == "It is 4.", msg)
    s = c.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "2+2?"}], max_tokens=60,
                                  stream=True, extra_body={"script": "<think>\nTwo and two.\n</think>\n\nFour.<|im_end|>"})
    rc, ct = "", ""
    for ch in s:
        for cc in ch.choices:
            rc += getattr(cc.delta, "reasoning_content", None) or ""
            ct += cc.delta.content or ""
    check("reasoning stream: reasoning_content deltas then content deltas", rc == "\nTwo and two.\n" and ct == "Four.",
          (rc, ct))


def t_brisk_modes(p):
    """brisk's own fields: reasoning branches, speculative decoding, ParallelPrompt."""
    c = client(p)
    r = c.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "1+1?"}], max_tokens=16,
                                  temperature=0.8, seed=3,
                                  extra_body={"mode": "reason", "branches": 4, "probe_every": 4})
    extra = (r.model_extra or {}).get("brisk", {})
    check("mode reason: one answer from 4 branches, brisk's fields beside it",
          len(r.choices) == 1 and extra.get("mode") == "reason" and extra.get("branches") == 4
          and "early_stop" in extra, r)
    r = c.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "x"}], max_tokens=8,
                                  extra_body={"mode": "reason", "budget_s": 0.5})
    check("mode reason with a latency budget (--plan)", len(r.choices) == 1, r)
    a = c.completions.create(model=MODEL_ID, prompt="The quick brown fox", max_tokens=12, temperature=0)
    b = c.completions.create(model=MODEL_ID, prompt="The quick brown fox", max_tokens=12, temperature=0,
                             extra_body={"spec": "ngram"})
    check("spec ngram: the same greedy text", a.choices[0].text == b.choices[0].text, (a, b))
    s = c.chat.completions.create(model=MODEL_ID, max_tokens=4, stream=True, messages=[{"role": "user", "content": "x"}],
                                  extra_body={"mode": "parallel", "parallel": {"template": "Say {data}",
                                              "context": "", "data": ["cat", "dog", "owl"]}})
    text, finish, _, _, _ = stream_text(s)
    check("mode parallel stream: the numbered sections in order", text.get(0, "").startswith("1. cat")
          and "2. dog" in text[0] and "3. owl" in text[0] and finish.get(0) in ("stop", "length"), text)


def t_errors(p):
    c = client(p)
    def status_of(fn):
        try:
            fn()
            return None, None
        except openai.APIStatusError as e:
            return e.status_code, e
    st, e = status_of(lambda: c.chat.completions.create(model="gpt-4o", messages=MSGS))
    check("unknown model: 404 NotFoundError", st == 404 and isinstance(e, openai.NotFoundError), e)
    st, e = status_of(lambda: c.chat.completions.create(model=MODEL_ID, messages=MSGS, max_tokens=0))
    check("max_tokens 0: 400 BadRequestError naming it", st == 400 and "max_tokens" in str(e), e)
    st, e = status_of(lambda: c.chat.completions.create(model=MODEL_ID, messages=MSGS, max_tokens=2.7))
    check("max_tokens 2.7: 400", st == 400, e)
    st, e = status_of(lambda: c.chat.completions.create(model=MODEL_ID, messages=[{"role": "wizard", "content": "x"}]))
    check("unknown role: 400", st == 400 and "role" in str(e), e)
    st, e = status_of(lambda: c.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "hi " * 2000}]))
    check("prompt past the context: 400 context_length_exceeded",
          st == 400 and e.code == "context_length_exceeded" and "eng_" not in str(e), e)
    st, e = status_of(lambda: c.chat.completions.create(model=MODEL_ID, messages=MSGS, frequency_penalty=1.0))
    check("an unsupported parameter is refused (400), not ignored", st == 400 and "frequency_penalty" in str(e), e)
    st, e = status_of(lambda: c.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "x" * (2 << 20)}]))
    check("a body over 1 MiB: 413", st == 413, e)
    def raw(path, data=None):
        req = urllib.request.Request(f"http://127.0.0.1:{p.port}{path}", data=data,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as he:
            return he.code, he.read().decode()
    code, body = raw("/v1/chat/completions", b"{not json")
    check("malformed JSON: 400 with an OpenAI error object",
          code == 400 and json.loads(body)["error"]["type"] == "invalid_request_error", (code, body))
    check("unknown /v1 path: 404", raw("/v1/nope")[0] == 404)
    check("GET on a POST endpoint: 405", raw("/v1/chat/completions")[0] == 405)


def t_auth():
    p = start("--token", "s3cret")
    try:
        try:
            client(p, api_key="wrong").models.list()
            st = None
        except openai.AuthenticationError as e:
            st = e.status_code
        check("wrong key: 401 AuthenticationError", st == 401, st)
        r = client(p, api_key="s3cret").chat.completions.create(model=MODEL_ID, messages=MSGS, max_tokens=2)
        check("the right key (Bearer, as the websocket side)", r.choices, r)
    finally:
        p.terminate(); p.wait(10)


def t_busy_and_shutdown():
    """One engine sequence and a queue of one: the third request is 429 with
    Retry-After; SIGTERM answers a request in flight with 503."""
    p = start("--max-batch", "1", "--max-queue", "1")
    try:
        c = client(p)
        # The first request's 900 tokens take a fraction of a second on the
        # tiny model; on a loaded machine it may finish before the third
        # request arrives, which then queues behind the second and is served.
        # So up to three rounds, each starting from an idle server; a server
        # that never answers 429 still fails.
        for attempt in range(3):
            s1 = c.chat.completions.create(model=MODEL_ID, messages=MSGS, max_tokens=900, stream=True)
            it1 = iter(s1)
            next(it1)   # running
            s2 = c.chat.completions.create(model=MODEL_ID, messages=MSGS, max_tokens=900, stream=True)
            it2 = iter(s2)   # queued (its headers and a queued comment are out)
            try:
                c.chat.completions.with_raw_response.create(model=MODEL_ID, messages=MSGS, max_tokens=5)
                st, retry = None, None
            except openai.RateLimitError as e:
                st, retry = e.status_code, e.response.headers.get("retry-after")
            s1.close(); s2.close()   # the server cancels both (client gone)
            if st == 429: break
            time.sleep(0.5)
        check("queue full: 429 RateLimitError with Retry-After", st == 429 and retry == "1",
              (st, retry, attempt + 1))
    finally:
        p.terminate(); p.wait(10)
    p = start()
    try:
        import threading
        out = {}
        def req():   # 64 reasoning branches of up to 1000 tokens: seconds on the tiny model
            try:
                client(p).chat.completions.create(model=MODEL_ID, messages=MSGS, max_tokens=1000, temperature=1.0,
                                                  extra_body={"mode": "reason", "branches": 64})
                out["st"] = 200
            except openai.APIStatusError as e:
                out["st"], out["e"] = e.status_code, e
            except Exception as e:
                out["st"], out["e"] = type(e).__name__, e
        th = threading.Thread(target=req)
        th.start()
        time.sleep(0.3)
        p.send_signal(signal.SIGTERM)
        th.join(20)
        check("SIGTERM with a request in flight: 503 InternalServerError", out.get("st") == 503, out)
    finally:
        if p.poll() is None: p.kill()


def t_curl_sse(p):
    """The SSE framing as curl sees it: headers, data: lines, [DONE]."""
    body = json.dumps({"model": MODEL_ID, "messages": MSGS, "max_tokens": 5, "stream": True})
    r = subprocess.run(["curl", "-sS", "-N", "-i", "-H", "Content-Type: application/json", "-d", body,
                        f"http://127.0.0.1:{p.port}/v1/chat/completions"], capture_output=True, text=True, timeout=30)
    head, _, rest = r.stdout.replace("\r\n", "\n").partition("\n\n")
    events = rest.split("\n\n")
    datas = [e for e in events if e]
    ok = head.startswith("HTTP/1.1 200") and "content-type: text/event-stream" in head.lower()
    ok = ok and all(e.startswith("data: ") and "\n" not in e for e in datas) and datas[-1] == "data: [DONE]"
    ok = ok and all(json.loads(e[6:])["object"] == "chat.completion.chunk" for e in datas[:-1])
    check("curl: text/event-stream, one data: line per event, blank-line separated, [DONE] last",
          ok and rest.endswith("data: [DONE]\n\n"), r.stdout[:800])
    r = subprocess.run(["curl", "-sS", "-i", "-H", "Content-Type: application/json", "-d",
                        json.dumps({"model": MODEL_ID, "messages": MSGS, "max_tokens": 3}),
                        f"http://127.0.0.1:{p.port}/v1/chat/completions"], capture_output=True, text=True, timeout=30)
    head, _, rest = r.stdout.replace("\r\n", "\n").partition("\n\n")
    m = re.search(r"content-length: (\d+)", head.lower())
    check("curl: a whole response has its content-length and one JSON object",
          m and int(m.group(1)) == len(rest.encode()) and json.loads(rest)["object"] == "chat.completion", r.stdout[:500])


def rss_kb(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"):
            return int(l.split()[1])


async def load_round(p, n=64, max_tokens=32):
    c = aclient(p)
    async def one(i):
        t0 = time.time()
        s = await c.chat.completions.create(model=MODEL_ID, max_tokens=max_tokens, temperature=0, stream=True,
                                            stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": f"Stream number {i} says hello."}])
        text, finish, usage, first = "", None, None, None
        async for ch in s:
            if ch.usage: usage = ch.usage
            for cc in ch.choices:
                if cc.delta.content:
                    first = first or time.time()
                    text += cc.delta.content
                finish = cc.finish_reason or finish
        return i, text, finish, usage, (first or time.time()) - t0
    t0 = time.time()
    out = await asyncio.gather(*(one(i) for i in range(n)))
    await c.close()
    return out, time.time() - t0


def t_load(p):
    """64 concurrent streams: nothing lost, each equal to its non-streamed
    answer, memory back to idle after."""
    asyncio.run(load_round(p))   # warm-up: arenas grow once
    time.sleep(0.3)
    idle = rss_kb(p.pid)
    out, wall = asyncio.run(load_round(p))
    time.sleep(0.5)
    after = rss_kb(p.pid)
    c = client(p)
    bad = []
    for i, text, finish, usage, _ in out:
        if finish not in ("stop", "length") or not usage or usage.completion_tokens < 1:
            bad.append((i, finish, usage))
    for i in (0, 17, 63):   # spot checks against whole responses
        r = c.chat.completions.create(model=MODEL_ID, max_tokens=32, temperature=0,
                                      messages=[{"role": "user", "content": f"Stream number {i} says hello."}])
        if r.choices[0].message.content != out[i][1]:
            bad.append((i, "differs", r.choices[0].message.content, out[i][1]))
    ttft = sorted(x[4] for x in out)
    toks = sum(x[3].completion_tokens for x in out if x[3])
    print(f"load: 64 concurrent streams in {wall:.2f} s, {toks} tokens ({toks / wall:.0f}/s), ttft p50 "
          f"{ttft[32] * 1e3:.1f} ms max {ttft[-1] * 1e3:.1f} ms, rss {idle} kB -> {after} kB", flush=True)
    check("load: 64 concurrent streams all complete, none lost, equal to whole responses",
          len(out) == 64 and not bad and len({x[0] for x in out}) == 64, bad[:3])
    check("load: memory back to its idle level", after <= idle * 1.10 + 2048, (idle, after))
    lines = [l for l in open(p.log).read().splitlines() if " query id=\"chatcmpl-" in l]
    check("request log: a line per API query too", len(lines) >= 128, len(lines))


def main():
    p = start("--allow-script", "--plan")
    try:
        t_basic(p)
        t_tools(p)
        t_brisk_modes(p)
        t_errors(p)
        t_curl_sse(p)
        t_load(p)
    finally:
        p.terminate(); p.wait(10)
    t_auth()
    t_busy_and_shutdown()


try:
    main()
except Exception as e:
    import traceback
    traceback.print_exc()
    check("openai test harness ran to the end", False, repr(e))
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
        try:
            os.unlink(p.log)
        except OSError:
            pass
print(f"{sum(results)} passed, {len(results) - sum(results)} failed, 0 skipped")
sys.exit(0 if all(results) else 1)
