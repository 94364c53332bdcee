"""The price API: FastAPI on uvicorn, one batching worker behind it.

    POST /price        {"description": "..."}        -> {"price": 64.0}   (or a catalog row: {"title": ..., ...})
                       {"descriptions": ["...", ...]} -> {"prices": [64.0, null], "errors": [null, "why"]}
    POST /price/file   {"format": "csv"|"tsv"|"jsonl"|"json"|"xlsx", "content": "..."} -> the same rows with a price column
                       (or the file itself: curl -F file=@items.csv http://127.0.0.1:8000/price/file)
    GET  /health       200 when the worker runs and its batches succeed, 503 (with the reason) otherwise
    GET  /metrics      Prometheus text: requests by status, latency, batch sizes, queue depth
    GET  /             the web page;  GET /docs: the OpenAPI docs

Bodies are read by the app itself, whatever their Content-Type (so `curl -d` works), with a size
limit and one deadline for the whole body; every request has one deadline for its prices (504 past
it), however many model batches they take; a full queue answers 503 with Retry-After. With an API
key, /price, /price/file and /metrics need `Authorization: Bearer <key>`, compared in constant time.
Without one, `allowed_hosts` (set by `pricetune serve` on loopback) refuses requests whose Host header
names another machine, so a web page elsewhere cannot reach the API through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .. import intervals
from ..data.rows import ITEM_TEXT_WANTED, item_text_of
from ..inference.similar import MAX_SIMILAR, check_similar_count
from .batcher import Batcher, DeadlinePassed, Overloaded, WorkerDown, where_raised
from .files import FORMATS, MAX_FILE_ROWS, file_note, read_table, row_text, write_table
from .page import render

MAX_ITEMS = 1024
RETRY_AFTER_S = 1
# asyncio.wait_for raises asyncio.TimeoutError, the builtin TimeoutError only from Python 3.11 on
WAIT_TIMEOUT = (asyncio.TimeoutError, TimeoutError)


class PriceRequest(BaseModel):
    """Exactly one of `description` (one item) or `descriptions` (a list)."""

    model_config = ConfigDict(extra="forbid")
    description: str | dict[str, Any] | None = Field(
        None, description="One item's text, a full prompt ending in 'Price is $', or a catalog row (an object with "
        "title, brand, description, ...: priced as `predict --file` prices a row).")
    descriptions: list[str | dict[str, Any]] | None = Field(None, min_length=1, max_length=MAX_ITEMS,
                                                            description=f"1 to {MAX_ITEMS} item texts or catalog rows.")
    interval: float | None = Field(None, gt=0, lt=1, description="Also a range holding the true price for this "
                                   "share of items (e.g. 0.8): 'low' and 'high' beside 'price'. Needs a calibrated "
                                   "model (`pricetune calibrate`).")
    similar: int | None = Field(None, ge=1, le=MAX_SIMILAR, description="Also the N training items most like each "
                                "description, with their prices and similarity ('similar' beside 'price'). Needs a "
                                "service started with `--similar`.")

    @model_validator(mode="after")
    def _one_of(self):
        if (self.description is None) == (self.descriptions is None):
            raise ValueError('send exactly one of "description" (a string) or "descriptions" (a list of strings)')
        if any(not t.strip() for t in self.texts):
            raise ValueError(f"every description must be a non-empty string, or a catalog row with {ITEM_TEXT_WANTED}")
        return self

    @property
    def texts(self) -> list[str]:
        given = [self.description] if self.description is not None else list(self.descriptions)
        return [(item_text_of(d) or "") if isinstance(d, dict) else d for d in given]


class LookAlikeReply(BaseModel):
    text: str = Field(description="A training item's text, as the training data held it.")
    price: float
    similarity: float = Field(description="TF-IDF cosine similarity to the description, 0 to 1.")


class PriceReply(BaseModel):
    price: float | None = Field(None, description="The price; null when this item could not be priced.")
    low: float | None = Field(None, description="With 'interval': the range's low end.")
    high: float | None = Field(None, description="With 'interval': the range's high end (null: no limit).")
    error: str | None = Field(None, description="Why there is no price, when there is none.")
    similar: list[LookAlikeReply] | None = Field(None, description="With 'similar': the look-alike training items.")
    prices: list[float | None] | None = None
    lows: list[float | None] | None = None
    highs: list[float | None] | None = None
    errors: list[str | None] | None = None
    similars: list[list[LookAlikeReply]] | None = None


class FileRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: str = Field(..., pattern=f"^({'|'.join(FORMATS)})$",
                        description="csv (comma or semicolon), tsv, jsonl (an object a line), json (a list of "
                        "objects) or xlsx (the workbook's bytes in base64, answered the same way).")
    content: str = Field(..., description=f"The file's text (an xlsx file's bytes in base64), at most {MAX_FILE_ROWS} rows.")


class FileReply(BaseModel):
    content: str
    priced: int
    failed: int
    note: str | None = Field(None, description="What pricing left out of the rows' text (a title beside a "
                             "row's 'text'), when it left something out.")


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("pricetune_requests", "HTTP requests by path and status",
                                ["path", "status"], registry=self.registry)
        self.latency = Histogram("pricetune_request_seconds", "Time to answer a pricing request", ["path"],
                                 registry=self.registry,
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.batch = Histogram("pricetune_batch_items", "Descriptions priced per model batch",
                               registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.queue = Gauge("pricetune_queue_depth", "Descriptions waiting for the model", registry=self.registry)


@dataclass
class Service:
    """What the handlers share: the pricer, its limits, the metrics, and (while running) the batcher."""

    pricer: object
    label: str
    api_key: str | None = None
    batch_size: int = 16
    max_wait_ms: float = 10.0
    max_queue: int = 8192  # descriptions
    request_timeout_s: float = 30.0
    body_timeout_s: float = 10.0
    max_body: int = 8 << 20  # /price/file's 5,000 rows of product text, about 1 KiB each
    allowed_hosts: tuple[str, ...] | None = None  # None: any Host header
    similar: int = 0  # look-alike training items a request may ask for, per description (0: none)
    metrics: Metrics | None = None
    batcher: Batcher | None = None


def service_of(request: Request) -> Service:
    return request.app.state.service


# ------------------------------------------------------------------------------------------------
# Request plumbing


def authorised(request: Request) -> None:
    key = service_of(request).api_key
    if key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), key.encode()):
        raise HTTPException(401, "missing or wrong API key (send Authorization: Bearer <key>)",
                            headers={"WWW-Authenticate": "Bearer"})


def host_allowed(host_header: str, allowed: tuple[str, ...]) -> bool:
    """The Host header's name (without its port; an IPv6 literal keeps its brackets) is one of `allowed`."""
    host = host_header.strip().lower()
    name = host[:host.index("]") + 1] if host.startswith("[") and "]" in host else host.split(":", 1)[0]
    return name in allowed


def too_large(svc) -> HTTPException:
    return HTTPException(413, f"body over {svc.max_body / 1024:g} KiB, this service's limit (whoever runs it sets "
                         "it: pricetune serve --max-body-kb)")


async def read_body(request: Request) -> bytes:
    """The whole body, within the size limit and one deadline for all of it."""
    svc = service_of(request)
    length = request.headers.get("content-length")
    if length is not None and int(length) > svc.max_body:  # h11 has already refused a garbled length
        raise too_large(svc)
    chunks, size = [], 0
    deadline = time.monotonic() + svc.body_timeout_s
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), max(0.0, deadline - time.monotonic()))
        except StopAsyncIteration:
            break
        except WAIT_TIMEOUT:
            raise HTTPException(408, f"the request body did not arrive within {svc.body_timeout_s:g} s") from None
        size += len(chunk)
        if size > svc.max_body:
            raise too_large(svc)
        chunks.append(chunk)
    return b"".join(chunks)


def parse(model, body: bytes):
    try:
        return model.model_validate_json(body)
    except ValidationError as e:
        raise HTTPException(400, "; ".join(request_problem(model, err) for err in e.errors())) from None


def request_problem(model, err: dict) -> str:
    """One validation error of a request body, for its sender: a field it misnamed comes with the real ones."""
    where = ".".join(map(str, err["loc"])) or "body"
    if err["type"] == "extra_forbidden":
        return f"{where}: not a field of this request (its fields: {', '.join(model.model_fields)})"
    return f"{where}: {err['msg'].removeprefix('Value error, ')}"


async def price_texts(request: Request, texts: list[str]) -> list[tuple[float | None, str | None]]:
    """One outcome per text, under the request's one deadline; a client that leaves cancels its job."""
    svc = service_of(request)
    deadline = time.monotonic() + svc.request_timeout_s
    late = HTTPException(504, f"no price within {svc.request_timeout_s:g} s")
    try:
        future = svc.batcher.submit(texts, deadline)
    except Overloaded:
        raise HTTPException(503, "the service is at capacity; retry shortly",
                            headers={"Retry-After": str(RETRY_AFTER_S)}) from None
    except WorkerDown as e:
        raise HTTPException(503, str(e)) from None
    waiting = asyncio.wrap_future(future)
    try:
        while True:  # wait, checking now and then whether the client is still there
            try:
                return await asyncio.wait_for(asyncio.shield(waiting), min(0.25, max(0.0, deadline - time.monotonic())))
            except WAIT_TIMEOUT:
                if time.monotonic() >= deadline:
                    raise late from None
                if await request.is_disconnected():
                    raise HTTPException(499, "client closed the request") from None
    except DeadlinePassed:
        raise late from None
    except WorkerDown as e:
        raise HTTPException(503, str(e)) from None
    finally:
        future.cancel()  # a no-op once priced; otherwise its remaining descriptions are never priced


# ------------------------------------------------------------------------------------------------
# Handlers

router = APIRouter()


def body_schema(model) -> dict:
    """The request schema for /docs: the handlers read their bodies themselves (any Content-Type)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def calibration_of(svc: Service) -> dict | None:
    return getattr(svc.pricer, "calibration", None)


def ranges_for(svc: Service, prices: list[float | None], coverage: float) -> tuple[list, list]:
    """(lows, highs) at `coverage`; a 400 that says how to calibrate when the model is not."""
    calibration = calibration_of(svc)
    if calibration is None:
        raise HTTPException(400, "this model has no calibration, so no price ranges: run `pricetune calibrate` on "
                            "it and restart the service")
    found = [intervals.interval(p, calibration, coverage) for p in prices]
    # JSON has no infinity: an unbounded high end is null
    return ([r[0] if r else None for r in found],
            [r[1] if r and r[1] != float("inf") else None for r in found])


def check_similar(svc: Service, k: int) -> None:
    """A 400 that says how, when the service shows no look-alike items or fewer than `k`."""
    if svc.similar == 0:
        raise HTTPException(400, "this service shows no look-alike items: start it with `pricetune serve ... "
                            "--similar K` (they show the training data's text)")
    if k > svc.similar:
        raise HTTPException(400, f"this service shows at most {svc.similar} look-alike items per description")


def look_alikes_for(svc: Service, texts: list[str], k: int) -> list[list[dict]]:
    """Each description's k look-alike training items, as the reply carries them."""
    return [[vars(a) for a in found] for found in svc.pricer.similar(texts, k)]


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page(request: Request):
    svc = service_of(request)
    return render(svc.label, svc.api_key is not None, ranges=calibration_of(svc) is not None, similar=svc.similar)


@router.get("/health")
async def health(request: Request):
    svc = service_of(request)
    batcher = svc.batcher
    body = {"model": svc.label, "batches": batcher.batches, "queue": batcher.depth,
            "ranges": calibration_of(svc) is not None,
            # look-alikes show training items' own text: whoever can call the service can read them
            "similar": {"max": svc.similar, "items": len(svc.pricer.items.texts), "shows": "training data text"}
            if svc.similar else None}
    if not batcher.alive:
        return JSONResponse({"status": "down", "error": batcher.error or "the pricing worker is not running",
                             **body}, status_code=503)
    if not batcher.healthy:
        return JSONResponse({"status": "failing", "error": f"the last {batcher.failed_in_a_row} model batches "
                             "failed (the server log says why)", **body}, status_code=503)
    return {"status": "ok", **body}


@router.get("/metrics", dependencies=[Depends(authorised)], include_in_schema=False)
async def prometheus(request: Request):
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(service_of(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.post("/price", response_model=PriceReply, response_model_exclude_unset=True,
             dependencies=[Depends(authorised)], openapi_extra=body_schema(PriceRequest))
async def price(request: Request):
    start = time.perf_counter()
    req = parse(PriceRequest, await read_body(request))
    svc = service_of(request)
    if req.interval is not None:
        ranges_for(svc, [], req.interval)  # an uncalibrated model: refused before the model works
    if req.similar:
        check_similar(svc, req.similar)  # the same: refused before the model works
    outcomes = await price_texts(request, req.texts)
    prices, errors = [p for p, _ in outcomes], [e for _, e in outcomes]
    extra = {}
    if req.interval is not None:
        lows, highs = ranges_for(svc, prices, req.interval)
        extra = dict(low=lows[0], high=highs[0]) if req.description is not None else dict(lows=lows, highs=highs)
    if req.similar:
        alike = await asyncio.to_thread(look_alikes_for, svc, req.texts, req.similar)
        extra.update(dict(similar=alike[0]) if req.description is not None else dict(similars=alike))
    svc.metrics.latency.labels("/price").observe(time.perf_counter() - start)
    if req.description is not None:
        return PriceReply(price=prices[0], error=errors[0], **extra) if prices[0] is None \
            else PriceReply(price=prices[0], **extra)
    if any(errors):
        return PriceReply(prices=prices, errors=errors, **extra)
    return PriceReply(prices=prices, **extra)


async def file_request(request: Request) -> FileRequest:
    """The body as a FileRequest: JSON, or an upload of the file itself (multipart, `curl -F
    file=@items.csv`) whose name's suffix says its format (or a `format` field)."""
    body = await read_body(request)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return parse(FileRequest, body)
    import importlib.util

    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    if importlib.util.find_spec("python_multipart") is None:
        raise HTTPException(415, "this service reads an uploaded file with python-multipart, which is not installed "
                            "(pip install 'pricetune[serve]'); or send {\"format\": ..., \"content\": ...} as JSON")

    async def received():
        yield body

    try:
        form = await MultiPartParser(request.headers, received(), max_files=1, max_fields=1).parse()
    except MultiPartException as e:
        raise HTTPException(400, f"the upload: {e.message}") from None
    files = [v for v in form.values() if isinstance(v, UploadFile)]
    if not files:
        raise HTTPException(400, "an upload holds the file: curl -F file=@items.csv URL/price/file")
    name = files[0].filename or ""
    fmt = str(form.get("format") or Path(name).suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise HTTPException(400, f"{name or 'the upload'}: say its format by the file's suffix or a format field: "
                            f"{', '.join(FORMATS)}")
    data = await files[0].read()
    await form.close()  # a large upload is spooled to a temporary file
    try:
        content = base64.b64encode(data).decode() if fmt == "xlsx" else data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HTTPException(400, f"{name}: not UTF-8 text (save it as UTF-8, or send an .xlsx workbook)") from None
    return FileRequest(format=fmt, content=content)


@router.post("/price/file", response_model=FileReply, dependencies=[Depends(authorised)],
             openapi_extra=body_schema(FileRequest))
async def price_file(request: Request):
    start = time.perf_counter()
    req = await file_request(request)
    try:
        table = read_table(req.format, req.content)
    except ValueError as e:
        raise HTTPException(400, str(e)) from None
    rows = table.rows
    outcomes: list[tuple[float | None, str | None]] = [(None, table.problems.get(i, "empty description"))
                                                       for i in range(len(rows))]
    texts = [row_text(r) if i not in table.problems else "" for i, r in enumerate(rows)]
    todo = [i for i, t in enumerate(texts) if t]
    if todo:  # one job: one deadline for the whole file
        for i, outcome in zip(todo, await price_texts(request, [texts[i] for i in todo])):
            outcomes[i] = outcome
    service_of(request).metrics.latency.labels("/price/file").observe(time.perf_counter() - start)
    return FileReply(content=write_table(req.format, table, outcomes),
                     priced=sum(p is not None for p, _ in outcomes), failed=sum(p is None for p, _ in outcomes),
                     note=file_note(rows))


# ------------------------------------------------------------------------------------------------
# The app

KNOWN_PATHS = {"/", "/price", "/price/file", "/health", "/metrics"}


async def guard_and_count(request: Request, call_next):
    """Refuse a foreign Host header, count every answer by path and status, 500s included."""
    import logging

    svc = service_of(request)
    path = request.url.path if request.url.path in KNOWN_PATHS else "other"
    if svc.allowed_hosts is not None and not host_allowed(request.headers.get("host", ""), svc.allowed_hosts):
        response = JSONResponse({"detail": "this service answers only requests addressed to this machine "
                                 f"({', '.join(svc.allowed_hosts)})"}, status_code=421)
    else:
        try:
            response = await call_next(request)
        except Exception as e:  # answered, counted and logged (without the request's text)
            logging.getLogger("pricetune.serving").error("%s %s failed: %s", request.method, path, where_raised(e))
            response = JSONResponse({"detail": "internal error (the server log says where)"}, status_code=500)
    svc.metrics.requests.labels(path, str(response.status_code)).inc()
    return response


def create_app(pricer, label: str, api_key: str | None = None, batch_size: int = 16, max_wait_ms: float = 10.0,
               max_queue: int = 8192, request_timeout_s: float = 30.0, body_timeout_s: float = 10.0,
               max_body: int = 8 << 20, cors_origins: list[str] | None = None,
               allowed_hosts: tuple[str, ...] | None = None, similar: int = 0) -> FastAPI:
    """The app around `pricer` (anything with `price_items(texts) -> list[float | None]`; with `similar`,
    a `Pricer` whose training items are read here, before the first request)."""
    svc = Service(pricer, label, api_key, batch_size, max_wait_ms, max_queue, request_timeout_s, body_timeout_s,
                  max_body, allowed_hosts, similar=check_similar_count(similar), metrics=Metrics())
    if similar:
        if pricer.items is None:
            pricer.items = pricer.training_items()
        # fitted here, once: lookups in worker threads would otherwise fit it together on a cold start
        pricer.items.fit()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        svc.batcher = Batcher(pricer, batch_size, max_wait_ms, max_queue, on_batch=svc.metrics.batch.observe)
        yield
        # uvicorn has stopped accepting and finished the requests in flight: drain and stop the worker
        await asyncio.to_thread(svc.batcher.stop)

    app = FastAPI(title="pricetune", summary="Prices products from their descriptions.", lifespan=lifespan,
                  version="1")
    app.state.service = svc
    svc.metrics.queue.set_function(lambda: svc.batcher.depth if svc.batcher else 0)
    app.middleware("http")(guard_and_count)
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.include_router(router)
    return app
