"""`pricetune serve`: its options and the command. The server's libraries load only when it runs."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket

from ..errors import PricetuneError

API_KEY_ENV = "PRICETUNE_API_KEY"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_serve_arguments(p) -> None:
    from ..options import COUNT, SIZE, Number, add_model_arguments

    p.add_argument("--run", metavar="RUN_DIR", help="A pricetune run directory (or one of its checkpoints).")
    p.add_argument("--ensemble", metavar="DIR", help="Serve an ensemble made by `pricetune ensemble` instead.")
    p.add_argument("--host", default="127.0.0.1",
                   help="Address to bind (default 127.0.0.1: this machine only). Any other needs an API key.")
    p.add_argument("--port", type=Number(int, 0, 65535), default=8000, help="Port (default 8000; 0 picks a free one).")
    p.add_argument("--api-key", default=None,
                   help=f"Require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV}; prefer the variable: a "
                   "command line is visible to other users of the machine).")
    p.add_argument("--cors-origin", action="append", metavar="ORIGIN",
                   help="Allow browser pages from this origin to call the API (repeat; default: none).")
    p.add_argument("--max-wait-ms", type=Number(float, 0), default=10.0,
                   help="How long the first request of a batch waits for company (default 10 ms).")
    p.add_argument("--max-queue", type=COUNT, default=8192,
                   help="Descriptions that may wait for the model, counted one by one (a request of 1,024 counts "
                   "1,024); past that, 503 with Retry-After (default 8192).")
    p.add_argument("--max-connections", type=COUNT, default=256,
                   help="Open connections at most; past that, new ones get 503 (default 256).")
    p.add_argument("--timeout", type=Number(float, 0, open=True), default=30.0, help="Seconds a request may wait for its price (504 after).")
    p.add_argument("--max-body-kb", type=COUNT, default=8192,
                   help="Largest request body in KiB (default 8192: a file of 5,000 items of product text, about "
                   "1 KiB each, the most /price/file takes).")
    p.add_argument("--similar", type=SIZE, default=0, metavar="K",
                   help="Let requests ask for up to K look-alike training items per description (the API's "
                   "'similar', a list on the page; at most 20). They show the training data's own text: turn this "
                   "on only where that data may be shown. Reads the run's neighbours.json or its dataset at start.")
    add_model_arguments(p)


def require_serve_extra() -> None:
    """The server's libraries are an extra: name it, with its install command, when one is missing."""
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "prometheus_client") if importlib.util.find_spec(m) is None]
    if missing:
        raise PricetuneError(f"pricetune serve needs {', '.join(missing)} (the 'serve' extra): "
                             "pip install 'pricetune[serve]'")


def serve_cli(ns) -> int:
    require_serve_extra()
    import uvicorn

    from ..inference import Pricer, load_from_args
    from ..inference.similar import check_similar_count
    from .app import create_app

    check_similar_count(ns.similar)  # here, not after the model has loaded
    if ns.ensemble:
        from ..inference.cli import refuse_model_options_for_ensemble

        refuse_model_options_for_ensemble(ns)
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
        if getattr(ns, "run", None):  # a run's (or checkpoint's) own calibration and training rows
            from .. import intervals
            from ..inference import run_paths

            pricer.folder = str(run_paths(ns.run)[1])
            pricer.calibration = intervals.load(pricer.folder, ns.decode)
        label = lm.label + (f" ({ns.decode})" if lm.objective == "generate" else " (regress)")
    app = create_app(pricer, label, api_key=api_key, batch_size=ns.batch_size, max_wait_ms=ns.max_wait_ms,
                     max_queue=ns.max_queue, request_timeout_s=ns.timeout, max_body=ns.max_body_kb * 1024,
                     cors_origins=ns.cors_origin, similar=ns.similar,
                     allowed_hosts=LOOPBACK_NAMES if api_key is None and is_loopback(ns.host) else None)
    host, port = sock.getsockname()[:2]
    print(f"serving {label} on http://{host}:{port}/  (page at /, API docs at /docs; "
          f"{'API key required' if api_key else 'no API key'}; Ctrl-C or SIGTERM stops)", flush=True)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=ns.timeout + 5, backlog=2048,
                            limit_concurrency=ns.max_connections)
    # uvicorn shuts down gracefully on SIGTERM or SIGINT, then raises the signal again under the handler
    # that was there before it: this one, so a graceful stop exits 0 instead of dying of the signal (143, 130)
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except _Stopped:
        print("stopped: requests in flight were answered", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


class _Stopped(Exception):
    pass


def _stopped(signum, frame):
    raise _Stopped()
