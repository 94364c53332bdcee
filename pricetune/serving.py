"""A small HTTP service around `Pricer`, batching concurrent requests into one generate call.

    pricetune serve --run runs/price-...-demo --port 8000 [--decode median]
    curl -s localhost:8000/price -d '{"description": "Title: 1.01 carat Ideal cut round diamond"}'
    # {"price": 4215.0}
    curl -s localhost:8000/price -d '{"descriptions": ["Title: a pen", "Title: a kettle"]}'
    # {"prices": [3.0, 24.0]}
    curl -s localhost:8000/health

The model is not thread-safe and a CPU or GPU is best fed whole batches, so one worker thread owns
it: requests wait in a queue, and the worker takes whatever has arrived within `max_wait_ms` of the
first (up to `batch_size` descriptions) and prices them together. Concurrent clients thus share
batches; a lone client waits at most `max_wait_ms` extra. The server is the standard library's
threaded HTTP server: it binds to 127.0.0.1 unless told otherwise, and has no authentication, so put
a real gateway in front of it before exposing it.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .errors import PricetuneError

MAX_BODY = 1 << 20  # 1 MiB of JSON is thousands of descriptions
MAX_ITEMS = 1024


class Batcher:
    """Owns the Pricer; prices queued descriptions in batches on one worker thread."""

    def __init__(self, pricer, batch_size: int = 16, max_wait_ms: float = 10.0):
        self.pricer, self.batch_size, self.max_wait = pricer, batch_size, max_wait_ms / 1000
        self.jobs: queue.Queue = queue.Queue()
        self.batches = 0  # for /health and tests
        self._worker = threading.Thread(target=self._run, daemon=True, name="pricetune-batcher")
        self._worker.start()

    def submit(self, descriptions: list[str]) -> Future:
        done: Future = Future()
        self.jobs.put((descriptions, done))
        return done

    def _run(self) -> None:
        while True:
            jobs = [self.jobs.get()]
            deadline = time.monotonic() + self.max_wait
            size = len(jobs[0][0])
            while size < self.batch_size:
                try:
                    job = self.jobs.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                jobs.append(job)
                size += len(job[0])
            texts = [t for descriptions, _ in jobs for t in descriptions]
            try:
                prices = self.pricer.price_many(texts)
            except Exception as e:  # the model failed: every waiting request hears about it
                for _, done in jobs:
                    done.set_exception(e)
                continue
            self.batches += 1
            start = 0
            for descriptions, done in jobs:
                done.set_result(prices[start:start + len(descriptions)])
                start += len(descriptions)


def parse_request(body: bytes) -> tuple[list[str], bool]:
    """The descriptions in a request body, and whether it asked for one price or a list."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise PricetuneError("the body must be JSON: {\"description\": \"...\"} or {\"descriptions\": [...]}") from None
    if not isinstance(data, dict) or ("description" in data) == ("descriptions" in data):
        raise PricetuneError("send exactly one of \"description\" (a string) or \"descriptions\" (a list of strings)")
    single = "description" in data
    items = [data["description"]] if single else data["descriptions"]
    if not isinstance(items, list) or not items or len(items) > MAX_ITEMS:
        raise PricetuneError(f"\"descriptions\" must be a list of 1 to {MAX_ITEMS} strings")
    if not all(isinstance(t, str) and t.strip() for t in items):
        raise PricetuneError("every description must be a non-empty string")
    return items, single


def make_server(batcher: Batcher, host: str = "127.0.0.1", port: int = 8000, label: str = "") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path != "/health":
                return self._reply(404, {"error": "try POST /price or GET /health"})
            self._reply(200, {"status": "ok", "model": label, "decode": batcher.pricer.decode,
                              "batches": batcher.batches})

        def do_POST(self):
            if self.path != "/price":
                return self._reply(404, {"error": "try POST /price or GET /health"})
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                return self._reply(413, {"error": f"body over {MAX_BODY} bytes"})
            try:
                items, single = parse_request(self.rfile.read(length))
            except PricetuneError as e:
                return self._reply(400, {"error": str(e)})
            try:
                prices = batcher.submit(items).result()
            except Exception as e:
                return self._reply(500, {"error": f"pricing failed: {type(e).__name__}"})
            self._reply(200, {"price": prices[0]} if single else {"prices": prices})

    return ThreadingHTTPServer((host, port), Handler)


def add_serve_arguments(p) -> None:
    from .inference import add_model_arguments

    p.add_argument("--run", metavar="RUN_DIR", help="A pricetune run directory.")
    p.add_argument("--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1: this machine only).")
    p.add_argument("--port", type=int, default=8000, help="Port (default 8000; 0 picks a free one).")
    p.add_argument("--max-wait-ms", type=float, default=10.0,
                   help="How long the first request of a batch waits for company (default 10 ms).")
    add_model_arguments(p)


def serve_cli(ns) -> int:
    from .inference import Pricer, load_from_args

    if ns.samples < 1 or ns.batch_size < 1 or ns.max_wait_ms < 0:
        raise PricetuneError("--samples and --batch-size must be >= 1, --max-wait-ms >= 0")
    lm = load_from_args(ns)
    batcher = Batcher(Pricer(lm, decode=ns.decode, batch_size=ns.batch_size, samples=ns.samples),
                      ns.batch_size, ns.max_wait_ms)
    server = make_server(batcher, ns.host, ns.port, lm.label)
    host, port = server.server_address[:2]
    print(f"serving {lm.label} ({ns.decode}) on http://{host}:{port}  (POST /price, GET /health; Ctrl-C stops)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
