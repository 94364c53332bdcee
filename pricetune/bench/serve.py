"""Load on the price API, measured from a second process, loopback only, bounded in requests and time.

    pricetune bench serve --run runs/amazon-18k-regress --dataset amazon-18k \
        --json bench/results/serve-cpu.json

Starts `pricetune serve` on 127.0.0.1 (a free port) as a child process, then for each level of
concurrency (1, 8, 32, 128 clients by default) sends `--requests` single-description requests, each
client one at a time, and records latency percentiles, items/s and errors; the level of 1 client is
the one-request-at-a-time reference the others are compared with. Last, an overload phase: the
server is restarted with a queue of `--overload-queue` and hit by 4x the capacity (queue + one
batch) of clients at once, which must be shed with 503s, without a crash, with its resident memory
sampled throughout. Nothing is sent anywhere but 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _post(url: str, text: str, timeout: float) -> tuple[int | str, float]:
    data = json.dumps({"description": text}).encode()
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST"), timeout=timeout) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError as e:  # refused, reset, timed out: counted as an error, by its kind
        status = type(e).__name__
    return status, time.perf_counter() - start


class Server:
    """`pricetune serve` in a child process; its RSS sampled in the background."""

    def __init__(self, args: list[str]):
        env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
        self.proc = subprocess.Popen([sys.executable, "-m", "pricetune", "serve", "--host", "127.0.0.1",
                                      "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env)
        line = ""
        while "serving" not in line:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                raise RuntimeError("the server exited before serving")
        self.url = line.split(" on ", 1)[1].split()[0].rstrip("/")
        self.rss_mb: list[float] = []
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self):
        import psutil

        p = psutil.Process(self.proc.pid)
        while not self._stop.is_set() and self.proc.poll() is None:
            try:
                self.rss_mb.append(p.memory_info().rss / 2**20)
            except psutil.Error:
                return
            self._stop.wait(0.1)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> int:
        self._stop.set()
        self.proc.terminate()
        return self.proc.wait(120)


def run_level(url: str, texts: list[str], clients: int, requests: int, timeout: float) -> dict:
    work = [texts[i % len(texts)] for i in range(requests)]
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda t: _post(url + "/price", t, timeout), work))
    wall = time.perf_counter() - start
    ok = [lat for status, lat in results if status == 200]
    statuses: dict[str, int] = {}
    for status, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "clients": clients, "requests": requests, "statuses": statuses, "errors": requests - len(ok),
        "items_per_second": len(ok) / wall, "wall_seconds": round(wall, 2),
        "latency_p50_s": _percentile(ok, 0.50) if ok else None, "latency_p95_s": _percentile(ok, 0.95) if ok else None,
        "latency_p99_s": _percentile(ok, 0.99) if ok else None, "latency_mean_s": statistics.fmean(ok) if ok else None,
    }


def bench_serve(opts: dict) -> dict:
    from pricetune.data import load_rows

    splits, _ = load_rows(opts["dataset"])
    texts = [r["prompt"] for r in splits["test"]]
    model = (["--run", opts["run"]] if opts.get("run") else ["--base-model", opts["model"], "--no-adapter"])
    common = model + ["--batch-size", str(opts["serve_batch_size"]), "--max-wait-ms", str(opts["max_wait_ms"]),
                      "--timeout", str(opts["timeout"])]
    levels = []
    server = Server(common + ["--max-queue", "256"])
    try:
        _post(server.url + "/price", texts[0], opts["timeout"])  # warm-up
        for clients in opts["clients"]:
            level = run_level(server.url, texts, clients, max(opts["requests"], clients), opts["timeout"])
            levels.append(level)
            print(f"{clients:>4} clients: {level['items_per_second']:.2f} items/s, p50 {level['latency_p50_s']:.3f} s, "
                  f"p99 {level['latency_p99_s']:.3f} s, errors {level['errors']}", file=sys.stderr)
        steady_rss = max(server.rss_mb)
    finally:
        server.close()
    base = levels[0]["items_per_second"]
    for level in levels:
        level["throughput_vs_one_at_a_time"] = level["items_per_second"] / base

    # overload: 4x what the server can hold (its queue plus one batch being priced)
    queue = opts["overload_queue"]
    capacity = queue + 1
    server = Server(common + ["--max-queue", str(queue)])
    try:
        rss_before = max(server.rss_mb or [0.0])
        overload = run_level(server.url, texts, 4 * capacity, 8 * capacity, opts["timeout"])
        overload.update(queue=queue, capacity_requests=capacity, alive_after=server.alive(),
                        rss_before_mb=rss_before, rss_peak_mb=max(server.rss_mb))
        status, _ = _post(server.url + "/price", texts[0], opts["timeout"])
        overload["answers_after"] = status
    finally:
        exit_code = server.close()
    overload["exit_code_on_sigterm"] = exit_code
    return {"what": "serve", "model": opts.get("run") or opts["model"], "dataset": opts["dataset"],
            "batch_size": opts["serve_batch_size"], "max_wait_ms": opts["max_wait_ms"], "levels": levels,
            "steady_rss_peak_mb": steady_rss, "overload": overload}
