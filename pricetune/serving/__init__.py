"""`pricetune serve`: the price API and its web page (FastAPI on uvicorn).

    pricetune serve --run runs/demo                        # http://127.0.0.1:8000/  (page), /docs (API)
    curl -s localhost:8000/price -d '{"description": "Title: 1.01 carat Ideal cut round diamond"}'
    # {"price": 4215.0}
    curl -s localhost:8000/price -d '{"descriptions": ["Title: a pen", "Title: a kettle"]}'
    # {"prices": [3.0, 24.0]}
    PRICETUNE_API_KEY=... pricetune serve --run runs/demo --host 0.0.0.0   # off loopback: a key is required
    curl -s -H "Authorization: Bearer $PRICETUNE_API_KEY" http://HOST:8000/price -d '{"description": "..."}'

Works for generate runs (greedy / expected / median decoding), regress runs and ensembles. SIGTERM
or Ctrl-C: stop accepting, finish the requests in flight, exit 0. docs/SERVING.md has the load
figures (`pricetune bench serve`).
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket

from ..errors import PricetuneError
from .app import create_app
from .batcher import Batcher

API_KEY_ENV = "PRICETUNE_API_KEY"
__all__ = ["create_app", "Batcher", "add_serve_arguments", "serve_cli", "is_loopback"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_serve_arguments(p) -> None:
    from ..options import add_model_arguments

    p.add_argument("--run", metavar="RUN_DIR", help="A pricetune run directory (or one of its checkpoints).")
    p.add_argument("--ensemble", metavar="DIR", help="Serve an ensemble made by `pricetune ensemble` instead.")
    p.add_argument("--host", default="127.0.0.1",
                   help="Address to bind (default 127.0.0.1: this machine only). Any other needs an API key.")
    p.add_argument("--port", type=int, default=8000, help="Port (default 8000; 0 picks a free one).")
    p.add_argument("--api-key", default=None,
                   help=f"Require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV}; prefer the variable: a "
                   "command line is visible to other users of the machine).")
    p.add_argument("--cors-origin", action="append", metavar="ORIGIN",
                   help="Allow browser pages from this origin to call the API (repeat; default: none).")
    p.add_argument("--max-wait-ms", type=float, default=10.0,
                   help="How long the first request of a batch waits for company (default 10 ms).")
    p.add_argument("--max-queue", type=int, default=64,
                   help="Requests that may wait for the model; past that, 503 with Retry-After (default 64).")
    p.add_argument("--timeout", type=float, default=30.0, help="Seconds a request may wait for its price (504 after).")
    p.add_argument("--max-body-kb", type=int, default=1024, help="Largest request body in KiB (default 1024).")
    add_model_arguments(p)


def serve_cli(ns) -> int:
    import uvicorn

    from ..inference import Pricer, load_from_args

    if ns.samples < 1 or ns.batch_size < 1 or ns.max_wait_ms < 0 or ns.max_queue < 1 or ns.timeout <= 0:
        raise PricetuneError("--samples, --batch-size and --max-queue must be >= 1, --max-wait-ms >= 0, --timeout > 0")
    api_key = ns.api_key or os.environ.get(API_KEY_ENV) or None
    if not is_loopback(ns.host) and api_key is None:
        raise PricetuneError(
            f"--host {ns.host} makes the service reachable from other machines, and it has no API key. Set "
            f"{API_KEY_ENV} (or --api-key), which clients send as 'Authorization: Bearer <key>', or bind to 127.0.0.1")
    if api_key is not None and len(api_key) < 16:
        raise PricetuneError("the API key must be at least 16 characters long")
    sock = socket.socket(socket.AF_INET6 if ":" in ns.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((ns.host, ns.port))
        sock.listen(2048)  # connections made before uvicorn starts wait in the backlog, not refused
    except OSError as e:
        raise PricetuneError(f"cannot listen on {ns.host}:{ns.port}: {e.strerror}") from None
    if ns.ensemble:
        pricer, label = Pricer.from_ensemble(ns.ensemble, batch_size=ns.batch_size), f"ensemble {ns.ensemble}"
    else:
        lm = load_from_args(ns)
        pricer = Pricer(lm, decode=ns.decode, batch_size=ns.batch_size, samples=ns.samples)
        label = lm.label + (f" ({ns.decode})" if lm.objective == "generate" else " (regress)")
    app = create_app(pricer, label, api_key=api_key, batch_size=ns.batch_size, max_wait_ms=ns.max_wait_ms,
                     max_queue=ns.max_queue, request_timeout_s=ns.timeout, max_body=ns.max_body_kb * 1024,
                     cors_origins=ns.cors_origin)
    host, port = sock.getsockname()[:2]
    print(f"serving {label} on http://{host}:{port}/  (page at /, API docs at /docs; "
          f"{'API key required' if api_key else 'no API key'}; Ctrl-C or SIGTERM stops)", flush=True)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=ns.timeout + 5, backlog=2048)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again under the handler that was
    # there before it: this one, so a graceful stop exits 0 instead of dying of the signal
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except _Stopped:
        print("stopped: requests in flight were answered", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


class _Stopped(Exception):
    pass


def _stopped(signum, frame):
    raise _Stopped()
