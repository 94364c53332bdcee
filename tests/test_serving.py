"""The price API: behaviour under bad input, load, failures and shutdown; the page in a real browser."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pricetune.cli import main
from pricetune.serving import create_app

KEY = "k" * 24


class Running:
    """A uvicorn server for an app, in a thread, on a free loopback port."""

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)


def _call(url, payload=None, headers=None, timeout=60):
    data = None if payload is None else payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null"), dict(r.headers)
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            body = json.loads(body)
        except json.JSONDecodeError:
            body = body.decode(errors="replace")
        return e.code, body, dict(e.headers)


def _raw(port: int, request: bytes, timeout: float = 10) -> str:
    """Send bytes as they are; the status line of the answer (or '' if the server closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            return "timeout"
    return data.split(b"\r\n", 1)[0].decode()


class FakePricer:
    """Prices = text length; a text with BAD makes its whole batch raise; `delay` per batch."""

    def __init__(self, delay: float = 0.0, die: bool = False):
        self.delay, self.die, self.batches = delay, die, []

    def price_items(self, texts):
        if self.die:
            raise SystemExit("worker killed")  # escapes the per-item fallback: the worker thread ends
        time.sleep(self.delay)
        self.batches.append(len(texts))
        if any("BAD" in t for t in texts):
            raise ValueError("cannot encode")
        return [None if "NOPRICE" in t else float(len(t)) for t in texts]


def test_each_bad_request_gets_its_4xx_and_the_server_stays_up():
    app = create_app(FakePricer(), "fake", max_body=8192, body_timeout_s=1.0)
    with Running(app) as srv:
        url = srv.url + "/price"
        cases = {
            "not json": (b"{oops", 400), "wrong type": ({"description": 3}, 400),
            "empty list": ({"descriptions": []}, 400), "both keys": ({"description": "a", "descriptions": ["b"]}, 400),
            "unknown key": ({"desc": "a"}, 400), "blank": ({"description": "  "}, 400),
            "too many": ({"descriptions": ["x"] * 1025}, 400), "too big": ({"description": "x" * 9000}, 413),
        }
        for name, (payload, status) in cases.items():
            start = time.monotonic()
            got, body, _ = _call(url, payload)
            assert got == status, (name, got, body)
            assert time.monotonic() - start < 5, name
        for length in (b"-1", b"abc", b"1e3"):
            line = _raw(srv.port, b"POST /price HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n{}")
            assert line.split()[1] == "400", (length, line)
        # announces a body and never sends it: answered, not held forever
        start = time.monotonic()
        line = _raw(srv.port, b"POST /price HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", timeout=10)
        assert line.split()[1] == "408" and time.monotonic() - start < 5, line
        # a body over the limit sent in chunks (no Content-Length) is cut off too
        chunk = b"x" * 5000
        line = _raw(srv.port, b"POST /price HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + b"%x\r\n" % len(chunk) + chunk + b"\r\n" + b"%x\r\n" % len(chunk) + chunk + b"\r\n0\r\n\r\n")
        assert line.split()[1] == "413", line
        status, body, _ = _call(url, {"description": "still up"})
        assert status == 200 and body == {"price": 8.0}
        # the API as before: curl -d sends no JSON content type, and still works
        status, body, _ = _call(url, b'{"descriptions": ["ab", "abc"]}',
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 200 and body == {"prices": [2.0, 3.0]}
        status, spec, _ = _call(srv.url + "/openapi.json")  # what /docs renders
        assert status == 200 and "/price" in spec["paths"] and "PriceRequest" in json.dumps(spec)


def test_an_unpriceable_item_fails_alone_in_a_shared_batch():
    pricer = FakePricer(delay=0.05)
    app = create_app(pricer, "fake", batch_size=16, max_wait_ms=300)
    texts = ["a pen", "BAD item", "a cup", "NOPRICE thing"]
    with Running(app) as srv:
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda t: _call(srv.url + "/price", {"description": t}), texts))
        status, body, _ = _call(srv.url + "/price", {"descriptions": texts})
    assert [r[0] for r in replies] == [200] * 4
    assert replies[0][1] == {"price": 5.0} and replies[2][1] == {"price": 5.0}
    assert replies[1][1]["price"] is None and replies[1][1]["error"]
    assert replies[3][1]["price"] is None and "no price" in replies[3][1]["error"]
    assert status == 200 and body["prices"] == [5.0, None, 5.0, None]
    assert body["errors"][0] is None and body["errors"][1] and body["errors"][3]
    assert pricer.batches[0] == 4  # the four clients shared one batch (which then failed as a whole)


def test_a_dead_worker_turns_health_and_requests_into_503s():
    pricer = FakePricer()
    app = create_app(pricer, "fake")
    with Running(app) as srv:
        assert _call(srv.url + "/health")[0] == 200
        pricer.die = True
        start = time.monotonic()
        status, body, _ = _call(srv.url + "/price", {"description": "kills the worker"}, timeout=20)
        assert status == 503 and time.monotonic() - start < 10, body
        status, body, _ = _call(srv.url + "/health")
        assert status == 503 and body["status"] == "down" and "SystemExit" in body["error"]
        assert _call(srv.url + "/price", {"description": "after"}, timeout=10)[0] == 503


def test_a_full_queue_sheds_load_with_retry_after():
    app = create_app(FakePricer(delay=0.5), "fake", batch_size=1, max_wait_ms=0, max_queue=1)
    with Running(app) as srv:
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda i: _call(srv.url + "/price", {"description": f"item {i}"}), range(8)))
        statuses = sorted(r[0] for r in replies)
        assert 200 in statuses and 503 in statuses, statuses
        assert all(r[2].get("retry-after") == "1" or r[2].get("Retry-After") == "1" for r in replies if r[0] == 503)
        metrics = urllib.request.urlopen(srv.url + "/metrics", timeout=10).read().decode()
        assert 'pricetune_requests_total{path="/price",status="503"}' in metrics
        assert "pricetune_batch_items_bucket" in metrics and "pricetune_queue_depth" in metrics


def test_api_key_off_loopback(capsys):
    # off loopback without a key: refused before anything loads
    assert main(["serve", "--host", "0.0.0.0", "--base-model", "nowhere", "--no-adapter"]) == 2
    assert "API key" in capsys.readouterr().err
    app = create_app(FakePricer(), "fake", api_key=KEY)
    with Running(app) as srv:
        assert _call(srv.url + "/price", {"description": "x"})[0] == 401
        assert _call(srv.url + "/price", {"description": "x"}, {"Authorization": "Bearer wrong"})[0] == 401
        assert _call(srv.url + "/metrics")[0] == 401
        status, body, _ = _call(srv.url + "/price", {"description": "x"}, {"Authorization": f"Bearer {KEY}"})
        assert status == 200 and body == {"price": 1.0}
        assert _call(srv.url + "/health")[0] == 200


def test_32_concurrent_clients_get_the_one_by_one_prices(tiny_model_dir, demo_splits):
    from pricetune.inference import Pricer, load_model

    pricer = Pricer(load_model(base_model=str(tiny_model_dir), quantization="none", precision="fp32"), batch_size=8)
    texts = [r["prompt"] for r in demo_splits["test"][:32]]
    expected = [pricer.price_items([t])[0] for t in texts]  # one by one, before the server exists
    app = create_app(pricer, "tiny", batch_size=8, max_wait_ms=200, max_queue=64)
    with Running(app) as srv:
        with ThreadPoolExecutor(32) as pool:
            replies = list(pool.map(lambda t: _call(srv.url + "/price", {"description": t}), texts))
        batches = app.state.batcher.batches
    assert [r[0] for r in replies] == [200] * 32
    assert [r[1].get("price") for r in replies] == expected
    assert batches < 32  # concurrent clients shared batches


def test_sigterm_finishes_the_request_in_flight_and_exits_0(tiny_model_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pricetune", "serve", "--base-model", str(tiny_model_dir), "--no-adapter",
         "--quantization", "none", "--precision", "fp32", "--port", "0", "--max-wait-ms", "1500"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = ""
        while "serving" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "server exited before serving"
        url = line.split(" on ", 1)[1].split()[0].rstrip("/")
        result = {}
        t = threading.Thread(target=lambda: result.update(r=_call(url + "/price", {"description": "Title: a pen"})))
        t.start()
        time.sleep(0.5)  # the request waits in the batcher (max-wait 1.5 s) when SIGTERM comes
        proc.send_signal(signal.SIGTERM)
        t.join(60)
        assert proc.wait(60) == 0
        assert result["r"][0] == 200 and "price" in result["r"][1]  # answered (an untrained model may give null)
    finally:
        if proc.poll() is None:
            proc.kill()


# ------------------------------------------------------------------------------------------------
# The page, in a real browser


def _chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class DevTools:
    """Chromium driven over the DevTools protocol (websocket-client): navigate, type, click, read."""

    def __init__(self, browser: str, profile: Path):
        self.proc = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
             f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=1000,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.is_file() or not port_file.read_text().strip():
            assert time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        import websocket

        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        self.n = 0

    def send(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.n:
                assert "error" not in msg, msg
                return msg.get("result", {})

    def js(self, expression: str):
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)[
            "result"].get("value")

    def close(self):
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(30)


def test_the_page_prices_a_description_in_chromium(tmp_path):
    import base64

    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's chromium)")
    app = create_app(FakePricer(), "fake model")
    with Running(app) as srv:
        page = urllib.request.urlopen(srv.url + "/", timeout=10).read().decode()
        assert "http://" not in page and "https://" not in page  # no CDN: works offline
        dt = DevTools(browser, tmp_path / "profile")
        try:
            dt.send("Page.enable")
            dt.send("Page.navigate", url=srv.url + "/")
            deadline = time.monotonic() + 30
            while dt.js("document.readyState") != "complete" or not dt.js("!!document.getElementById('go')"):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            dt.js("document.getElementById('description').focus()")
            dt.send("Input.insertText", text="Title: a red pen")  # typed, as a keyboard would
            box = dt.js("(() => { const r = document.getElementById('go').getBoundingClientRect();"
                        " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
            for kind in ("mousePressed", "mouseReleased"):
                dt.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)
            while not (dt.js("document.getElementById('price').textContent") or "").startswith("$"):
                assert time.monotonic() < deadline, dt.js("document.body.innerText")
                time.sleep(0.1)
            assert dt.js("document.getElementById('price').textContent") == "$16.00"  # len("Title: a red pen")
            shot = dt.send("Page.captureScreenshot", format="png")["data"]
            out = tmp_path / "page.png"
            out.write_bytes(base64.b64decode(shot))
            keep = os.environ.get("PRICETUNE_TEST_ARTIFACTS")
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                (Path(keep) / "serve-page.png").write_bytes(out.read_bytes())
            assert out.stat().st_size > 5_000
        finally:
            dt.close()


def test_file_pricing_round_trip():
    app = create_app(FakePricer(), "fake")
    with Running(app) as srv:
        csv_text = "sku,description\n1,a pen\n2,\n3,BAD one\n"
        status, body, _ = _call(srv.url + "/price/file", {"format": "csv", "content": csv_text})
        assert status == 200 and body["priced"] == 1 and body["failed"] == 2
        lines = body["content"].splitlines()
        assert lines[0] == "sku,description,price,error" and lines[1].startswith("1,a pen,5.00,")
        jsonl = '{"prompt": "a cup"}\n{"description": "a mug!"}\n'
        status, body, _ = _call(srv.url + "/price/file", {"format": "jsonl", "content": jsonl})
        assert status == 200 and [json.loads(l)["price"] for l in body["content"].splitlines()] == [5.0, 6.0]
        status, body, _ = _call(srv.url + "/price/file", {"format": "csv", "content": "a,b\n1,2\n"})
        assert status == 400 and "description" in body["detail"]
