#!/usr/bin/python3
"""Integration tests of `brisk serve` through a real websocket client (Debian's
python3-websockets).  Usage: server_test.py BRISK_BINARY MODEL_DIR
Prints one line per test and a closing "N passed, N failed, N skipped"."""
import asyncio, json, os, re, signal, subprocess, sys, time, urllib.request, urllib.error
import websockets

BRISK, MODEL = sys.argv[1], sys.argv[2]
results = []

LOGS = []

def start(*extra):
    """A server on a free port; its request log goes to a file of its own
    (p.log_path) unless extra names --log."""
    import tempfile
    log = []
    if "--log" not in extra:
        fd, path = tempfile.mkstemp(prefix="brisk_log_", suffix=".txt")
        os.close(fd)
        log = ["--log", path]
        LOGS.append(path)
    p = subprocess.Popen([BRISK, "serve", "--model", MODEL, "--port", "0", *log, *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.log_path = log[1] if log else None
    line = p.stdout.readline()
    if "serving" not in line:
        raise RuntimeError("server did not start: " + line + p.stderr.read())
    port = int(re.search(r"http://\S+:(\d+)/", line).group(1))
    return p, port

def http(port, path, headers=None):
    return http_url(f"http://127.0.0.1:{port}{path}", headers)

def http_url(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()

async def recv_json(ws, timeout=20):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))

async def collect(ws, qid, timeout=30):
    """Messages of one query until its stats message."""
    out = []
    while True:
        m = await recv_json(ws, timeout)
        if m.get("id") == qid:
            out.append(m)
            if m["type"] == "stats":
                return out

def check(name, cond, detail=""):
    results.append((name, bool(cond)))
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else "  " + str(detail)), flush=True)

async def t_basic(port):
    async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
        await ws.send(json.dumps({"type": "ping", "id": "p1"}))
        m = await recv_json(ws)
        check("ping gets pong", m == {"type": "pong", "id": "p1"}, m)
        await ws.send(json.dumps({"type": "query", "id": "a", "prompt": "The quick brown fox", "max_tokens": 12}))
        msgs = await collect(ws, "a")
        toks = [m for m in msgs if m["type"] == "token"]
        ans = [m for m in msgs if m["type"] == "answer"]
        check("query streams tokens then answer then stats",
              len(ans) == 1 and msgs[-1]["type"] == "stats" and msgs[-2]["type"] == "answer" and 0 < len(toks) <= 12, msgs[-3:])
        check("token texts add up to the answer", "".join(t["text"] for t in toks) == ans[0]["text"])
        st = msgs[-1]
        check("stats carry timings", st["tokens"] >= len(toks) and st["ttft_ms"] >= 0 and st["wall_ms"] >= st["ttft_ms"], st)
        gen = subprocess.run([BRISK, "generate", "--model", MODEL, "--prompt", "The quick brown fox",
                              "--max-tokens", "12"], capture_output=True, text=True)
        check("greedy answer equals `brisk generate`", gen.stdout.rstrip("\n") == ans[0]["text"], (gen.stdout, ans[0]["text"]))
        await ws.send(json.dumps({"type": "query", "id": "sp", "prompt": "The quick brown fox", "max_tokens": 12, "spec": "ngram"}))
        msgs = await collect(ws, "sp")
        sp_ans = [m["text"] for m in msgs if m["type"] == "answer"]
        check("speculative (n-gram) answer equals the plain greedy one", sp_ans == [ans[0]["text"]], (sp_ans, ans[0]["text"]))
        await ws.send(json.dumps({"type": "query", "id": "m", "max_tokens": 5,
                                  "messages": [{"role": "user", "content": "What is 2+2?"}]}))
        msgs = await collect(ws, "m")
        check("chat messages query answered", any(m["type"] == "answer" for m in msgs))
        # agent mode: the model's output is scripted (--allow-script), the tool is real
        await ws.send(json.dumps({"type": "query", "id": "ag", "mode": "agent", "prompt": "2+3*4?", "max_tokens": 300,
            "script": ["<tool_call>\n{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2+3*4\"}}\n</tool_call><|im_end|>",
                       "It is 14.<|im_end|>"]}))
        msgs = await collect(ws, "ag")
        types = [m["type"] for m in msgs]
        res = [m for m in msgs if m["type"] == "tool_result"]
        ans = [m for m in msgs if m["type"] == "answer"]
        check("agent mode streams tool_call, tool_result, answer",
              "tool_call" in types and res and res[0]["result"].startswith("14") and ans and ans[0]["text"] == "It is 14.", msgs[-4:])
        await ws.send(json.dumps({"type": "query", "id": "ag2", "mode": "agent", "prompt": "hi", "max_tokens": 8}))
        msgs = await collect(ws, "ag2")
        check("agent mode without a script answers", any(m["type"] == "answer" for m in msgs), msgs[-2:])
        # reason mode: branches forked from one prompt, per-branch progress
        await ws.send(json.dumps({"type": "query", "id": "rs", "mode": "reason", "prompt": "1+1?", "n": 4,
                                  "max_tokens": 12, "temperature": 0.8, "seed": 3, "probe_every": 4}))
        msgs = await collect(ws, "rs")
        br = {m["branch"] for m in msgs if m["type"] == "token" and "branch" in m}
        bmsg = [m for m in msgs if m["type"] == "branch"]
        ans = [m for m in msgs if m["type"] == "answer"]
        check("reason mode streams 4 branches, branch messages and one answer",
              br == {0, 1, 2, 3} and bmsg and len(ans) == 1, (br, len(bmsg), ans))
        await ws.send(json.dumps({"type": "query", "id": "rb", "mode": "reason", "prompt": "x", "budget_s": 0.5}))
        msgs = await collect(ws, "rb")
        check("reason mode with a latency budget answers (planner)", any(m["type"] == "answer" for m in msgs), msgs[-2:])
        plan = [m for m in msgs if m["type"] == "plan"]
        stats = [m for m in msgs if m["type"] == "stats"]
        check("the plan comes first, names no accuracy model and plans on the real prompt and KV",
              len(plan) == 1 and msgs[0] is plan[0] and plan[0]["accuracy_model"] == "none"
              and "expected_accuracy" not in plan[0] and plan[0]["kv_free_blocks"] > 0
              and stats and plan[0]["prompt_tokens"] == stats[0]["prompt_tokens"]
              and plan[0]["n"] == len(stats[0]["branch_tokens"]), (plan, stats))
        # parallel mode: a schema given, and one detected in a raw prompt
        await ws.send(json.dumps({"type": "query", "id": "pp", "mode": "parallel", "max_tokens": 6,
            "parallel": {"template": "Translate to French: {data}", "context": "", "data": ["cat", "dog", "bird"]}}))
        msgs = await collect(ws, "pp")
        ans = [m for m in msgs if m["type"] == "answer"]
        secs = [m["branch"] for m in msgs if m["type"] == "branch"]
        check("parallel mode answers 3 subtasks in item order", ans and ans[0]["subtasks"] == 3 and secs == [0, 1, 2]
              and ans[0]["text"].startswith("1. cat"), (secs, ans))
        await ws.send(json.dumps({"type": "query", "id": "pd", "mode": "parallel", "max_tokens": 4,
            "prompt": "Summarize each of the following:\n1. The sun is hot.\n2. Ice is cold.\n3. Rain is wet."}))
        msgs = await collect(ws, "pd")
        ans = [m for m in msgs if m["type"] == "answer"]
        check("parallel mode detects a numbered list", ans and ans[0]["subtasks"] == 3, msgs[-2:])
        # hoist_context: the context moves ahead of the item, so the subtasks share it
        spec = {"template": "Find {data} in this text: {context}", "data": ["cats", "dogs"],
                "context": "Cats and dogs live together in the old house by the river, " * 4}
        shared = {}
        for qid, hoist in (("ph0", False), ("ph1", True), ("ph2", None)):
            sp = dict(spec) if hoist is None else dict(spec, hoist_context=hoist)
            await ws.send(json.dumps({"type": "query", "id": qid, "mode": "parallel", "max_tokens": 3,
                                      "parallel": sp}))
            msgs = await collect(ws, qid)
            st = [m for m in msgs if m["type"] == "stats"]
            ans = [m for m in msgs if m["type"] == "answer"]
            shared[hoist] = st[0]["shared_prompt_tokens"] if st and ans and ans[0]["subtasks"] == 2 else -1
        check("parallel hoist_context shares the context (more shared prompt tokens)",
              shared[False] >= 0 and shared[True] > shared[False] + 20, shared)
        check("parallel mode hoists the context by default", shared[None] == shared[True], shared)
        await ws.send(json.dumps({"type": "query", "id": "phb", "mode": "parallel",
                                  "parallel": dict(spec, hoist_context="yes")}))
        m = await recv_json(ws)
        check("parallel hoist_context must be a boolean", m["type"] == "error" and m["id"] == "phb"
              and "hoist_context" in m.get("message", ""), m)
        await ws.send(json.dumps({"type": "query", "id": "pn", "mode": "parallel", "prompt": "Hello there"}))
        m = await recv_json(ws)
        check("parallel mode refuses a prompt with no items", m["type"] == "error" and m["id"] == "pn", m)
        # agent fetch_url goes through the web cache: the second fetch is a hit
        page = f"http://127.0.0.1:{WEB_PORT}/page.html"
        for qid in ("f1", "f2"):
            await ws.send(json.dumps({"type": "query", "id": qid, "mode": "agent", "prompt": "read it", "max_tokens": 300,
                "script": ["<tool_call>\n{\"name\": \"fetch_url\", \"arguments\": {\"url\": \"" + page + "\"}}\n</tool_call><|im_end|>",
                           "Read.<|im_end|>"]}))
            msgs = await collect(ws, qid)
            res = [m for m in msgs if m["type"] == "tool_result"]
            check(f"agent fetch_url {qid} returns the page", res and "Brisk test page" in res[0]["result"], res)
        _, body = http(port, "/metrics")
        check("second fetch of a page is a cache hit (/metrics)", "brisk_cache_hit_rate 0.5000" in body,
              [l for l in body.splitlines() if "cache" in l])
        # several queries at once on one connection, routed by id
        ids = [f"c{i}" for i in range(4)]  # the server runs with a cap of 4 per client
        for i in ids:
            await ws.send(json.dumps({"type": "query", "id": i, "prompt": "count " + i, "max_tokens": 10,
                                      "temperature": 0.8, "seed": 7}))
        done, seen = set(), {}
        while len(done) < len(ids):
            m = await recv_json(ws)
            seen.setdefault(m["id"], []).append(m["type"])
            if m["type"] == "stats": done.add(m["id"])
        check("concurrent queries on one connection all answered",
              all(seen[i].count("answer") == 1 and seen[i][-1] == "stats" for i in ids), seen)
        # cancel
        await ws.send(json.dumps({"type": "query", "id": "long", "prompt": "go on", "max_tokens": 4000}))
        while (await recv_json(ws))["type"] != "token":
            pass
        await ws.send(json.dumps({"type": "cancel", "id": "long"}))
        msgs = await collect(ws, "long")
        ans = [m for m in msgs if m["type"] == "answer"]
        check("cancel ends the query with finish=cancelled", ans and ans[0]["finish"] == "cancelled", ans)
        await ws.send(json.dumps({"type": "cancel", "id": "nope"}))
        m = await recv_json(ws)
        check("cancel of an unknown id is an error", m["type"] == "error" and m["code"] == "unknown_query", m)
        await ws.send(json.dumps({"type": "query", "id": "d1", "prompt": "x", "max_tokens": 3000}))
        await ws.send(json.dumps({"type": "query", "id": "d1", "prompt": "x", "max_tokens": 5}))
        got = None
        while got is None:
            m = await recv_json(ws)
            if m["type"] == "error": got = m
        check("duplicate live id is refused", got["code"] == "duplicate_id", got)
        await ws.send(json.dumps({"type": "cancel", "id": "d1"}))
        await collect(ws, "d1")

async def t_context(port):
    """max_tokens past the model's context (1024 for the tiny model) ends with
    finish "length" at the context's end; a prompt that fills the context is
    the client's error, named as such."""
    async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
        for mode, extra in (("chat", {}), ("agent", {}), ("reason", {"n": 2})):
            await ws.send(json.dumps({"type": "query", "id": "cx-" + mode, "mode": mode, "prompt": "go on",
                                      "max_tokens": 4000, **extra}))
            msgs = await collect(ws, "cx-" + mode, 60)
            errs = [m for m in msgs if m["type"] == "error"]
            ans = [m for m in msgs if m["type"] == "answer"]
            st = msgs[-1]
            check(f"{mode}: max_tokens past the context ends with finish length, no error",
                  not errs and ans and ans[0]["finish"] in ("length", "stop") and
                  (ans[0]["finish"] == "stop" or mode == "reason" or st["prompt_tokens"] + st["tokens"] >= 1000),
                  (errs, ans and ans[0]["finish"], st))
        await ws.send(json.dumps({"type": "query", "id": "cx-p", "mode": "parallel", "max_tokens": 4000,
                                  "parallel": {"template": "Say {data}", "context": "", "data": ["a", "b"]}}))
        msgs = await collect(ws, "cx-p", 60)
        ans = [m for m in msgs if m["type"] == "answer"]
        check("parallel: max_tokens past the context gives no error", ans and not [m for m in msgs if m["type"] == "error"],
              msgs[-3:])
        for mode in ("chat", "reason", "parallel", "agent"):
            await ws.send(json.dumps({"type": "query", "id": "tl-" + mode, "mode": mode,
                                      "prompt": "Summarize each of the following:\n1. a\n2. b\n" + "word " * 1500}))
            m = await recv_json(ws)
            check(f"{mode}: a prompt longer than the context is refused as prompt_too_long, in the client's terms",
                  m["type"] == "error" and m["code"] == "prompt_too_long" and "eng_" not in m["message"]
                  and "context" in m["message"], m)
            await ws.send(json.dumps({"type": "ping", "id": "tl-p"}))
            m = await recv_json(ws)
            check(f"{mode}: ... and nothing else comes of it", m == {"type": "pong", "id": "tl-p"}, m)

async def t_parallel_finish(port):
    """Subtasks cut at max_tokens: each branch and the answer say "length"."""
    async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
        await ws.send(json.dumps({"type": "query", "id": "pf", "mode": "parallel", "max_tokens": 2,
            "parallel": {"template": "Write a long story about {data}", "context": "", "data": ["cats", "dogs", "owls"]}}))
        msgs = await collect(ws, "pf")
        br = [m for m in msgs if m["type"] == "branch"]
        ans = [m for m in msgs if m["type"] == "answer"]
        cut = [b for b in br if b["tokens"] >= 2]
        check("parallel: subtasks cut at max_tokens report finish length, and so does the answer",
              len(br) == 3 and all(b["finish"] == ("length" if b["tokens"] >= 2 else "stop") for b in br)
              and ans and ans[0]["finish"] == ("length" if cut else "stop") and cut, (br, ans))

async def t_queue():
    """Past the engine's 256 sequences queries wait in a bounded queue (told
    their place) instead of failing; past the queue they are refused busy."""
    p, port = start("--max-queries-per-client", "16")
    try:
        errors, queued, answered = [], [], set()
        async def client(ci):
            async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
                ids = [f"q{ci}-{k}" for k in range(15)]
                for q in ids:
                    await ws.send(json.dumps({"type": "query", "id": q, "prompt": f"client {ci} says {q}",
                                              "max_tokens": 24}))
                done = set()
                while len(done) < len(ids):
                    m = await recv_json(ws, 60)
                    if m["type"] == "error": errors.append(m)
                    elif m["type"] == "queued": queued.append(m["position"])
                    elif m["type"] == "answer": answered.add(m["id"])
                    elif m["type"] == "stats": done.add(m["id"])
        await asyncio.gather(*(client(i) for i in range(20)))
        check("300 queries at once (engine: 256 sequences): none refused, all answered",
              not errors and len(answered) == 300, (errors[:2], len(answered)))
        check("queries past the engine's sequences are told their place in the queue",
              queued and min(queued) == 1 and max(queued) <= 300 - 256 + 16, (len(queued), queued[:5]))
    finally:
        p.terminate(); p.wait(10)
    p, port = start("--max-batch", "4", "--max-queue", "4")
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
            for k in range(10):   # 240 tokens: long enough that none ends before all 10 arrive, short enough for the KV pool of 4 x context/4
                await ws.send(json.dumps({"type": "query", "id": f"b{k}", "prompt": "go on", "max_tokens": 240}))
            errors, queued, done = {}, {}, set()
            while len(done) + len(errors) < 10:
                m = await recv_json(ws, 60)
                if m["type"] == "error": errors[m["id"]] = m
                elif m["type"] == "queued": queued[m["id"]] = m["position"]
                elif m["type"] == "stats": done.add(m["id"])
            busy = [e for e in errors.values() if e["code"] == "busy" and "queue" in e["message"]]
            check("--max-queue 4 with 4 sequences: 4 run, 4 wait (positions 1-4), 2 are refused busy",
                  len(done) == 8 and len(busy) == 2 and sorted(queued.values()) == [1, 2, 3, 4],
                  (sorted(done), errors, queued))
    finally:
        p.terminate(); p.wait(10)

async def t_tp():
    """--tp 2: the engine split over two ranks answers like the unsplit one
    (greedy), and /metrics reports the ranks and each one's all-reduces."""
    texts = {}
    for tp in ("1", "2"):
        p, port = start("--tp", tp, "--web-cache", "off")
        try:
            async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
                await ws.send(json.dumps({"type": "query", "id": "t", "prompt": "The quick", "max_tokens": 12,
                                          "temperature": 0}))
                msgs = await collect(ws, "t")
                texts[tp] = "".join(m.get("text", "") for m in msgs if m["type"] == "token")
            _, body = http(port, "/metrics")
            ranks = re.search(r"^brisk_tp_ranks (\d+)$", body, re.M)
            counts = re.findall(r'^brisk_tp_allreduces_total\{rank="(\d)"\} (\d+)$', body, re.M)
            secs = re.findall(r'^brisk_tp_allreduce_seconds_total\{rank="(\d)"\} ([0-9.]+)$', body, re.M)
            if tp == "1":
                check("/metrics unsplit: brisk_tp_ranks 1, no per-rank lines", ranks and ranks.group(1) == "1"
                      and not counts, body[-400:])
            else:
                check("/metrics --tp 2: two ranks, each with all-reduces counted and timed",
                      ranks and ranks.group(1) == "2" and [r for r, _ in counts] == ["0", "1"] and
                      all(int(n) > 0 for _, n in counts) and len(secs) == 2, body[-400:])
        finally:
            p.terminate(); p.wait(10)
    check("--tp 2 streams the unsplit greedy text", texts.get("1") and texts.get("1") == texts.get("2"), texts)

def raw_ws(port, frames):
    """Opens a websocket by hand, sends the given raw frames, and returns the
    messages and the close code the server answers with (None when it sent
    none): python3-websockets cannot send broken frames."""
    import base64, socket, struct
    sk = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sk.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sk.recv(4096)
    head, buf = buf.split(b"\r\n\r\n", 1)
    assert b" 101 " in head.split(b"\r\n")[0], head
    for f in frames:
        sk.sendall(f)
    msgs, code = [], None
    try:
        while code is None:
            while len(buf) < 2 or len(buf) < 2 + (buf[1] & 0x7f):
                d = sk.recv(65536)
                if not d: raise EOFError
                buf += d
            op, n = buf[0] & 0x0f, buf[1] & 0x7f
            if n >= 126:   # long server messages: not expected here
                raise ValueError("long frame")
            body, buf = buf[2:2 + n], buf[2 + n:]
            if op == 8: code = struct.unpack(">H", body[:2])[0] if len(body) >= 2 else 1005
            else: msgs.append(body.decode(errors="replace"))
    except (EOFError, OSError, ValueError):
        pass
    sk.close()
    return msgs, code

def ws_frame(payload, opcode=1, masked=True):
    import struct
    head = bytes([0x80 | opcode])
    n = len(payload)
    lb = bytes([n]) if n < 126 else bytes([126]) + struct.pack(">H", n)
    if not masked:
        return head + lb + payload
    key = os.urandom(4)
    lb = bytes([lb[0] | 0x80]) + lb[1:]
    return head + lb + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))

def t_frames(port):
    ping = b'{"type":"ping","id":"r1"}'
    msgs, code = raw_ws(port, [ws_frame(ping)])
    check("raw client: a masked text frame is answered", msgs and '"r1"' in msgs[0], (msgs, code))
    msgs, code = raw_ws(port, [ws_frame(b'{"type":"ping","id":"\xff\xfe"}')])
    check("invalid UTF-8 in a text frame: closed with 1007", code == 1007 and not msgs, (msgs, code))
    msgs, code = raw_ws(port, [ws_frame(ping, masked=False)])
    check("an unmasked client frame: closed with 1002", code == 1002 and not msgs, (msgs, code))
    msgs, code = raw_ws(port, [ws_frame(ping), ws_frame(b'{"type":"ping","id":"r2"}' + b" " * 300, masked=False)])
    check("an unmasked frame after masked ones: closed with 1002", code == 1002 and len(msgs) == 1, (msgs, code))

def log_lines(p):
    return open(p.log_path).read().splitlines()

def t_request_log(p):
    """One line per query: id, mode, tokens in and out, time to first token,
    total time, finish; refused queries too."""
    lines = log_lines(p)
    a = [l for l in lines if ' id="a" ' in l]
    ok = len(a) == 1 and re.search(r' mode=chat in=\d+ out=\d+ ttft_ms=[\d.]+ total_ms=[\d.]+ finish=(stop|length)$', a[0])
    check("request log: one line for query a with mode, tokens, ttft, total, finish", ok, a)
    rs = [l for l in lines if ' id="rs" ' in l]
    check("request log: reason mode logged", len(rs) == 1 and " mode=reason " in rs[0], rs)
    dup = [l for l in lines if ' id="d1" ' in l]
    check("request log: a refused query is logged with its code", any(l.endswith("finish=duplicate_id") for l in dup), dup)
    cx = [l for l in lines if ' id="cx-chat" ' in l]
    check("request log: lines start with a UTC timestamp", cx and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z query ", cx[0]), cx)
    n_lines = len([l for l in lines if " query id=" in l])
    check("request log: a line per query (at least the 256 of the load test)", n_lines >= 256, n_lines)

async def t_log_default_stderr():
    """Without --log the request log goes to stderr."""
    import tempfile
    err = tempfile.TemporaryFile("w+")
    p = subprocess.Popen([BRISK, "serve", "--model", MODEL, "--port", "0"], stdout=subprocess.PIPE,
                         stderr=err, text=True)
    try:
        port = int(re.search(r"http://\S+:(\d+)/", p.stdout.readline()).group(1))
        async with websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send(json.dumps({"type": "query", "id": "lg", "prompt": "hi", "max_tokens": 3}))
            await collect(ws, "lg")
    finally:
        p.terminate(); p.wait(10)
    err.seek(0)
    text = err.read()
    check("request log: on stderr by default", ' query id="lg" mode=chat ' in text, text[-300:])

async def t_chat_options(port):
    """Chat mode: n choices forked from one prompt, stop strings, top_logprobs."""
    async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
        await ws.send(json.dumps({"type": "query", "id": "n3", "prompt": "Once upon a time", "n": 3,
                                  "max_tokens": 8, "temperature": 0.9, "seed": 5}))
        msgs = await collect(ws, "n3")
        toks = {}
        for m in msgs:
            if m["type"] == "token": toks[m["branch"]] = toks.get(m["branch"], "") + m["text"]
        br = [m for m in msgs if m["type"] == "branch"]
        ans = [m for m in msgs if m["type"] == "answer"]
        ch = ans[0].get("choices", []) if ans else []
        check("chat n=3: three choices streamed by branch, each ends with a branch message, answer lists them",
              sorted(toks) == [0, 1, 2] and len(br) == 3 and len(ch) == 3
              and all(toks[i] == ch[i]["text"] and ch[i]["finish"] in ("stop", "length") for i in range(3))
              and ans[0]["text"] == ch[0]["text"], (toks, br, ans))
        await ws.send(json.dumps({"type": "query", "id": "s0", "prompt": "The quick brown fox", "max_tokens": 12}))
        full = [m for m in await collect(ws, "s0") if m["type"] == "answer"][0]["text"]
        stop = full[5:8]
        await ws.send(json.dumps({"type": "query", "id": "s1", "prompt": "The quick brown fox", "max_tokens": 12,
                                  "stop": ["zzzz", stop]}))
        msgs = await collect(ws, "s1")
        ans = [m for m in msgs if m["type"] == "answer"][0]
        streamed = "".join(m["text"] for m in msgs if m["type"] == "token")
        check("stop: the answer ends before the stop string, finish stop, streamed text equals it",
              ans["text"] == full[:full.index(stop)] and ans["finish"] == "stop" and streamed == ans["text"],
              (full, stop, ans, streamed))
        await ws.send(json.dumps({"type": "query", "id": "lp", "prompt": "The quick brown fox", "max_tokens": 4,
                                  "top_logprobs": 3}))
        toks = [m for m in await collect(ws, "lp") if m["type"] == "token"]
        ok = len(toks) == 4
        for t in toks:
            alts = t.get("top_logprobs", [])
            ok = ok and "piece" in t and len(alts) == 3 and alts[0]["token"] == t["token"] \
                and abs(alts[0]["logprob"] - t["logprob"]) < 1e-3 \
                and alts[0]["logprob"] >= alts[1]["logprob"] >= alts[2]["logprob"]
        check("top_logprobs 3: each token carries its piece and 3 alternatives, the greedy one first", ok, toks[:1])

MALFORMED = [
    "not json", "[1,2]", "\"str\"", "42", "null", "{}", '{"type":5}', '{"type":"bogus"}',
    '{"type":"query"}', '{"type":"query","id":""}', '{"type":"query","id":"' + "x" * 80 + '","prompt":"a"}',
    '{"type":"query","id":7,"prompt":"a"}', '{"type":"query","id":"a","prompt":5}', '{"type":"query","id":"a","prompt":""}',
    '{"type":"query","id":"a","prompt":"a","messages":[]}', '{"type":"query","id":"a","messages":"hi"}',
    '{"type":"query","id":"a","messages":[]}', '{"type":"query","id":"a","messages":[{"content":"x"}]}',
    '{"type":"query","id":"a","messages":[{"role":"wizard","content":"x"}]}',
    '{"type":"query","id":"a","messages":[{"role":"user","content":3}]}',
    '{"type":"query","id":"a","prompt":"a","mode":"dance"}', '{"type":"query","id":"a","prompt":"a","mode":1}',
    '{"type":"query","id":"a","prompt":"a","max_tokens":0}', '{"type":"query","id":"a","prompt":"a","max_tokens":1e9}',
    '{"type":"query","id":"a","prompt":"a","max_tokens":"5"}', '{"type":"query","id":"a","prompt":"a","temperature":-1}',
    '{"type":"query","id":"a","prompt":"a","temperature":100}', '{"type":"query","id":"a","prompt":"a","top_p":2}',
    '{"type":"query","id":"a","prompt":"a","top_k":-1}', '{"type":"query","id":"a","prompt":"a","seed":-5}',
    '{"type":"query","id":"a","prompt":"a","n":0}', '{"type":"query","id":"a","prompt":"a","budget_s":0}',
    '{"type":"cancel"}', '{"type":"query","id":"a","prompt":"a"', '{"type":"query","id":"a","prompt":"\\ud800"', "",
    '{"type":"query","id":"a","prompt":"a","mode":"chat","max_tokens":[1]}', '{"type":"query","id":"a","prompt":"a","spec":"magic"}',
    # a NUL would cut the id or the text short; counts must be whole numbers
    '{"type":"query","id":"a\\u0000b","prompt":"x"}', '{"type":"query","id":"a","prompt":"x\\u0000y"}',
    '{"type":"query","id":"a","messages":[{"role":"user","content":"hi\\u0000there"}]}',
    '{"type":"query","id":"a","prompt":"a","max_tokens":2.7}', '{"type":"query","id":"a","prompt":"a","top_k":1.5}',
    '{"type":"query","id":"a","prompt":"a","seed":0.5}', '{"type":"query","id":"a","prompt":"a","n":2.5}',
    '{"type":"query","id":"a","prompt":"a","stop":""}', '{"type":"query","id":"a","prompt":"a","stop":["a","b","c","d","e"]}',
    '{"type":"query","id":"a","prompt":"a","stop":[1]}', '{"type":"query","id":"a","prompt":"a","top_logprobs":21}',
    '{"type":"query","id":"a","prompt":"a","logprobs":"yes"}',
]

async def t_malformed(port):
    async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
        bad = []
        for i, s in enumerate(MALFORMED):
            await ws.send(s)
            m = await recv_json(ws)
            if m.get("type") != "error" or not m.get("code") or not m.get("message"):
                bad.append((s, m))
            await ws.send(json.dumps({"type": "ping", "id": f"after{i}"}))
            if (await recv_json(ws)) != {"type": "pong", "id": f"after{i}"}:
                bad.append((s, "no pong after"))
        check(f"{len(MALFORMED)} malformed messages each get an error, connection stays up", not bad, bad[:3])
        await ws.send(b"\xff\xfe binary \x00")
        m = await recv_json(ws)
        check("binary garbage gets an error", m.get("type") == "error", m)
        await ws.send("{" + " " * (2 << 20) + "}")
        m = await recv_json(ws)
        check("oversized message gets too_large", m.get("code") == "too_large", m)
        await ws.send(json.dumps({"type": "ping", "id": "still"}))
        check("connection alive after oversized message", (await recv_json(ws)).get("id") == "still")
        # an escaped backslash before "u0000" is text, not a NUL
        await ws.send('{"type":"query","id":"bs","prompt":"x\\\\u0000y","max_tokens":2}')
        msgs = await collect(ws, "bs")
        check("a literal backslash-u0000 in a prompt is text", any(m["type"] == "answer" for m in msgs), msgs[-2:])

async def t_limits(port):
    async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
        for i in range(5):
            await ws.send(json.dumps({"type": "query", "id": f"l{i}", "prompt": "a", "max_tokens": 2000}))
        err = None
        while err is None:
            m = await recv_json(ws)
            if m["type"] == "error": err = m
        check("per-client query cap enforced", err["code"] == "too_many_queries" and err["id"] == "l4", err)
    # the connection closed with 4 queries in flight: they must be freed
    ok = False
    for _ in range(50):
        _, body = http(port, "/metrics")
        if "brisk_live_queries 0" in body and "brisk_queue_depth 0" in body:
            ok = True
            break
        await asyncio.sleep(0.1)
    check("disconnect mid-stream frees the client's queries", ok, body)
    code, _ = http(port, "/health")
    check("server healthy after disconnect", code == 200)

def upgrade_status(port, headers, path="/"):
    """Status of a websocket upgrade request, or the exception's name when the
    server hung up without one."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    h = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
         "Sec-WebSocket-Version": "13", **headers}
    try:
        c.request("GET", path, headers=h)
        r = c.getresponse()
        return r.status, r.getheader("WWW-Authenticate"), r.read().decode()
    except Exception as e:
        return type(e).__name__, None, ""
    finally:
        c.close()

def t_upgrade_refusals(port):
    st, auth, body = upgrade_status(port, {})
    check("upgrade without the token: 401 with WWW-Authenticate: Bearer", st == 401 and auth == "Bearer"
          and "token" in body, (st, auth, body))
    st, auth, body = upgrade_status(port, {"Authorization": "Bearer nope"})
    check("upgrade with a wrong token: 401", st == 401, (st, body))
    st, _, body = upgrade_status(port, {"Authorization": "Bearer s3cret", "Origin": "http://evil.example"})
    check("upgrade from a foreign origin: 403", st == 403 and "origin" in body, (st, body))
    st, _, body = upgrade_status(port, {"Authorization": "Bearer s3cret", "Sec-WebSocket-Protocol": "chat, superchat"})
    check("upgrade asking for an unknown subprotocol: 400", st == 400 and "subprotocol" in body, (st, body))
    st, _, _ = upgrade_status(port, {"Authorization": "Bearer s3cret", "Sec-WebSocket-Protocol": "chat, brisk"})
    check("upgrade offering brisk among others: 101", st == 101, st)

async def t_fetch_refused(port):
    """Without --fetch-private the agent's fetch_url may not read loopback
    (here: the test web server, or this server's own /metrics)."""
    async with websockets.connect(f"ws://127.0.0.1:{port}/", extra_headers={"Authorization": "Bearer s3cret"}) as ws:
        for qid, url in (("fr1", f"http://127.0.0.1:{WEB_PORT}/page.html"), ("fr2", f"http://localhost:{port}/metrics")):
            await ws.send(json.dumps({"type": "query", "id": qid, "mode": "agent", "prompt": "read it", "max_tokens": 300,
                "script": ["<tool_call>\n{\"name\": \"fetch_url\", \"arguments\": {\"url\": \"" + url + "\"}}\n</tool_call><|im_end|>",
                           "Read.<|im_end|>"]}))
            msgs = await collect(ws, qid)
            res = [m for m in msgs if m["type"] == "tool_result"]
            check(f"fetch_url of {url.split('/')[2]} refused without --fetch-private",
                  res and res[0]["error"] and "refused" in res[0]["result"] and "brisk_" not in res[0]["result"]
                  and "Brisk test page" not in res[0]["result"], res)

async def t_auth(port):
    for name, kw in (("no token", {}), ("wrong token", {"extra_headers": {"Authorization": "Bearer nope"}})):
        try:
            async with websockets.connect(f"ws://127.0.0.1:{port}/", **kw) as ws:
                await ws.send('{"type":"ping"}'); await recv_json(ws, 2)
                check(f"auth: {name} refused", False, "connected")
        except Exception:
            check(f"auth: {name} refused", True)
    async with websockets.connect(f"ws://127.0.0.1:{port}/", extra_headers={"Authorization": "Bearer s3cret"}) as ws:
        await ws.send('{"type":"ping","id":"h"}')
        check("auth: bearer header accepted", (await recv_json(ws))["id"] == "h")
    async with websockets.connect(f"ws://127.0.0.1:{port}/?token=s3cret") as ws:
        await ws.send('{"type":"ping","id":"u"}')
        check("auth: ?token= accepted", (await recv_json(ws))["id"] == "u")
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/?token=s3cret", origin="http://evil.example") as ws:
            await ws.send('{"type":"ping"}'); await recv_json(ws, 2)
            check("foreign origin refused", False)
    except Exception:
        check("foreign origin refused", True)
    code, _ = http(port, "/metrics")
    check("metrics need the token", code == 401, code)
    code, body = http(port, "/metrics", {"Authorization": "Bearer s3cret"})
    check("metrics with the token", code == 200 and "brisk_tokens_total" in body, code)

async def t_shutdown(p, port):
    async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
        await ws.send(json.dumps({"type": "query", "id": "s", "prompt": "run", "max_tokens": 4000}))
        while (await recv_json(ws))["type"] != "token":
            pass
        p.send_signal(signal.SIGTERM)
        msgs = await collect(ws, "s")
        ans = [m for m in msgs if m["type"] == "answer"]
        check("SIGTERM: in-flight query gets a final answer (finish=shutdown)", ans and ans[0]["finish"] == "shutdown", ans)
    try:
        rc = p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill(); rc = None
    check("SIGTERM: server exits cleanly", rc == 0, rc)

def rss_kb(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])

async def load_round(port, n_clients=64, per=4):
    ttft, lost = [], []
    async def client(ci):
        async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
            qs = {f"q{ci}-{k}": time.time() for k in range(per)}
            for q in qs:
                await ws.send(json.dumps({"type": "query", "id": q, "prompt": f"client {ci} query {q}", "max_tokens": 16}))
            first, answers, stats, toks = {}, {}, set(), {}
            while len(stats) < per:
                m = await recv_json(ws, 60)
                q = m["id"]
                if m["type"] == "token":
                    first.setdefault(q, time.time()); toks[q] = toks.get(q, "") + m["text"]
                elif m["type"] == "answer":
                    if q in answers: lost.append(("dup answer", q))
                    answers[q] = m["text"]
                elif m["type"] == "stats":
                    stats.add(q)
                elif m["type"] == "error":
                    lost.append(("error", m))
            for q in qs:
                if answers.get(q) != toks.get(q, ""): lost.append(("tokens != answer", q))
                if q in first: ttft.append(first[q] - qs[q])
    t0 = time.time()
    await asyncio.gather(*(client(i) for i in range(n_clients)))
    return ttft, lost, time.time() - t0

async def t_load(p, port):
    await load_round(port)                      # warm-up: arenas grow once
    idle = rss_kb(p.pid)
    ttft, lost, wall = await load_round(port)
    await asyncio.sleep(0.5)
    after = rss_kb(p.pid)
    ttft.sort()
    n = 64 * 4
    print(f"load: {n} queries from 64 clients in {wall:.2f} s, {n * 16 / wall:.0f} tokens/s, "
          f"ttft p50 {ttft[len(ttft)//2]*1e3:.1f} ms p99 {ttft[int(len(ttft)*0.99)-1]*1e3:.1f} ms, "
          f"rss {idle} kB -> {after} kB", flush=True)
    check("load: 64 clients x 4 queries, none lost or duplicated", not lost and len(ttft) == n, lost[:3])
    check("load: memory back to its idle level", after <= idle * 1.10 + 2048, (idle, after))

WEB_PORT = 0

def start_web():
    """A plain HTTP server with one page, for fetch_url."""
    global WEB_PORT
    import http.server, threading, tempfile
    d = tempfile.mkdtemp()
    open(os.path.join(d, "page.html"), "w").write("<html><head><title>Brisk test page</title></head>"
                                                 "<body><p>Hello from the test web.</p></body></html>")
    h = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=d, **k)
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
    WEB_PORT = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return d

async def main():
    import tempfile, shutil
    webdir = start_web()
    cache_db = os.path.join(webdir, "cache.db")
    p, port = start("--max-queries-per-client", "4", "--allow-script", "--plan", "--web-cache", cache_db,
                    "--fetch-private")
    try:
        code, body = http(port, "/health")
        check("GET /health", code == 200 and json.loads(body)["status"] == "ok", body)
        code, body = http(port, "/metrics")
        check("GET /metrics is Prometheus text", code == 200 and "# TYPE brisk_queue_depth gauge" in body, body[:200])
        kv = re.search(r"^brisk_kv_free_blocks (\d+)$", body, re.M)
        check("free KV blocks come from the engine's snapshot (idle: all free)", kv and int(kv.group(1)) > 0, body)
        code, body = http(port, "/")
        check("GET / serves the page", code == 200 and "<title>brisk</title>" in body, code)
        code, _ = http(port, "/nope")
        check("unknown path is 404", code == 404, code)
        await t_basic(port)
        await t_context(port)
        await t_chat_options(port)
        await t_parallel_finish(port)
        await t_malformed(port)
        t_frames(port)
        await t_limits(port)
        await t_load(p, port)
        await t_shutdown(p, port)
        t_request_log(p)
    finally:
        if p.poll() is None: p.kill()
    await t_log_default_stderr()
    await t_queue()
    await t_tp()
    p, port = start("--token", "s3cret", "--allow-script", "--web-cache", "off")
    try:
        await t_fetch_refused(port)
        await t_auth(port)
        t_upgrade_refusals(port)
    finally:
        p.terminate(); p.wait(10)
    p = subprocess.Popen([BRISK, "serve", "--model", MODEL, "--host", "localhost", "--port", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        m = re.search(r"http://(\S+):(\d+)/", line)
        code = http_url(f"http://{m.group(1)}:{m.group(2)}/health")[0] if m else None
        check("--host localhost listens where it says (a resolved address)",
              m and m.group(1) in ("127.0.0.1", "[::1]") and code == 200, (line, code))
    finally:
        p.terminate(); p.wait(10)
    r = subprocess.run([BRISK, "serve", "--model", MODEL, "--host", "0.0.0.0", "--port", "0"],
                       capture_output=True, text=True, timeout=30)
    check("no token off loopback is refused", r.returncode != 0 and "token" in r.stderr, r.stderr)
    r = subprocess.run([BRISK, "serve", "--model", "/nonexistent", "--port", "0"], capture_output=True, text=True, timeout=30)
    check("missing model gives a clear error", r.returncode != 0 and "/nonexistent" in r.stderr, r.stderr)

try:
    asyncio.run(main())
except Exception as e:
    check("server test harness ran to the end", False, repr(e))
for path in LOGS:
    os.unlink(path)
passed = sum(1 for _, ok in results if ok)
print(f"{passed} passed, {len(results) - passed} failed, 0 skipped")
sys.exit(0 if passed == len(results) else 1)
