#!/usr/bin/python3
"""The page at / in headless Chromium, serving the real default model
(SmolLM2-135M-Instruct): a question typed and sent from the page in chat
mode, its streamed answer read back from the page (it must equal the
websocket answer to the same messages and name Paris) and captured in a
screenshot.  Drives Chromium over the DevTools protocol with python3-websockets.
Usage: browser_test.py BRISK_BINARY MODEL SCREENSHOT.png"""
import asyncio, base64, json, os, shutil, subprocess, sys, tempfile, time
import websockets

BRISK, MODEL, SHOT = sys.argv[1:4]
PROMPT = "What is the capital of France?"

def start_server():
    p = subprocess.Popen([BRISK, "serve", "--model", MODEL, "--port", "0"], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    return p, int(line.split("http://127.0.0.1:")[1].split("/")[0])

def start_chromium(profile):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=1000,700", "about:blank"]
    c = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = os.path.join(profile, "DevToolsActivePort")
    for _ in range(200):
        if os.path.exists(port_file) and len(open(port_file).read().split()) >= 2:
            port, path = open(port_file).read().split()[:2]
            return c, f"ws://127.0.0.1:{port}{path}"
        time.sleep(0.05)
    raise RuntimeError("chromium did not start")

class CDP:
    def __init__(self, ws): self.ws, self.n = ws, 0
    async def call(self, method, session=None, **params):
        self.n += 1
        msg = {"id": self.n, "method": method, "params": params}
        if session: msg["sessionId"] = session
        await self.ws.send(json.dumps(msg))
        while True:
            r = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if r.get("id") == self.n:
                if "error" in r: raise RuntimeError(f"{method}: {r['error']}")
                return r.get("result", {})

async def expected_answer(port):
    async with websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
        # The page's chat mode sends the text as one user message (through the
        # model's chat template), so the expected answer is asked the same way.
        await ws.send(json.dumps({"type": "query", "id": "x", "messages": [{"role": "user", "content": PROMPT}],
                                  "max_tokens": 24, "temperature": 0}))
        while True:
            m = json.loads(await ws.recv())
            if m["type"] == "answer": return m["text"]

async def main():
    srv, port = start_server()
    profile = tempfile.mkdtemp()
    chrome, dt_url = start_chromium(profile)
    ok = False
    try:
        want = await expected_answer(port)
        async with websockets.connect(dt_url, max_size=None) as ws:
            cdp = CDP(ws)
            tid = (await cdp.call("Target.createTarget", url=f"http://127.0.0.1:{port}/"))["targetId"]
            sid = (await cdp.call("Target.attachToTarget", targetId=tid, flatten=True))["sessionId"]
            ev = lambda js: cdp.call("Runtime.evaluate", sid, expression=js, returnByValue=True)
            for _ in range(100):
                r = await ev("document.getElementById('status') && document.getElementById('status').textContent")
                if r["result"].get("value") == "connected": break
                await asyncio.sleep(0.1)
            await ev(f"document.getElementById('prompt').value = {json.dumps(PROMPT)};"
                     "document.getElementById('max').value = 24; document.getElementById('send').click(); 1")
            got = None
            for _ in range(200):
                r = await ev("(() => { const d = document.querySelector('.q'); return d && d.dataset.done ?"
                             " d.querySelector('.out').textContent : null })()")
                got = r["result"].get("value")
                if got is not None: break
                await asyncio.sleep(0.1)
            shot = await cdp.call("Page.captureScreenshot", sid, format="png")
            png = base64.b64decode(shot["data"])
            open(SHOT, "wb").write(png)
            ok = got == want and "Paris" in (got or "") and png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
            print(("ok   " if ok else "FAIL ") + f"page streamed the answer {got!r} "
                  f"(matches the websocket answer: {got == want}); screenshot {SHOT} ({len(png)} bytes)")
    except Exception as e:
        print("FAIL browser test:", repr(e))
    finally:
        chrome.kill(); srv.terminate(); srv.wait(10)
        shutil.rmtree(profile, ignore_errors=True)
    print(f"{int(ok)} passed, {int(not ok)} failed, 0 skipped")
    sys.exit(0 if ok else 1)

asyncio.run(main())
