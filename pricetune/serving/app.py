"""The price API: FastAPI on uvicorn, one batching worker behind it.

    POST /price        {"description": "..."}        -> {"price": 64.0}
                       {"descriptions": ["...", ...]} -> {"prices": [64.0, null], "errors": [null, "why"]}
    POST /price/file   {"format": "csv"|"jsonl", "content": "..."} -> the same rows with a price column
    GET  /health       200 when the worker runs, 503 (with the reason) when it does not
    GET  /metrics      Prometheus text: requests by status, latency, batch sizes, queue depth
    GET  /             the web page;  GET /docs: the OpenAPI docs

Bodies are read by the app itself, whatever their Content-Type (so `curl -d` works), with a size
limit and a deadline for the body to arrive; every request has a deadline for its price (504 past
it); a full queue answers 503 with Retry-After. With an API key, /price, /price/file and /metrics
need `Authorization: Bearer <key>`, compared in constant time.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import json
import time
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .batcher import Batcher, DeadlinePassed, Overloaded, WorkerDown
from .page import render

MAX_ITEMS = 1024
MAX_FILE_ROWS = 5000
RETRY_AFTER_S = 1


class PriceRequest(BaseModel):
    """Exactly one of `description` (one item) or `descriptions` (a list)."""

    model_config = ConfigDict(extra="forbid")
    description: str | None = Field(None, description="One item's text, or a full prompt ending in 'Price is $'.")
    descriptions: list[str] | None = Field(None, min_length=1, max_length=MAX_ITEMS,
                                           description=f"1 to {MAX_ITEMS} item texts.")

    @model_validator(mode="after")
    def _one_of(self):
        if (self.description is None) == (self.descriptions is None):
            raise ValueError('send exactly one of "description" (a string) or "descriptions" (a list of strings)')
        if any(not t.strip() for t in self.texts):
            raise ValueError("every description must be a non-empty string")
        return self

    @property
    def texts(self) -> list[str]:
        return [self.description] if self.description is not None else list(self.descriptions)


class PriceReply(BaseModel):
    price: float | None = Field(None, description="The price; null when this item could not be priced.")
    error: str | None = Field(None, description="Why there is no price, when there is none.")
    prices: list[float | None] | None = None
    errors: list[str | None] | None = None


class FileRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: str = Field(..., pattern="^(csv|jsonl)$")
    content: str


class FileReply(BaseModel):
    content: str
    priced: int
    failed: int


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
        self.queue = Gauge("pricetune_queue_depth", "Jobs waiting for the model", registry=self.registry)


def create_app(pricer, label: str, api_key: str | None = None, batch_size: int = 16, max_wait_ms: float = 10.0,
               max_queue: int = 64, request_timeout_s: float = 30.0, body_timeout_s: float = 10.0,
               max_body: int = 1 << 20, cors_origins: list[str] | None = None) -> FastAPI:
    """The app around `pricer` (anything with `price_items(texts) -> list[float | None]`)."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.batcher = Batcher(pricer, batch_size, max_wait_ms, max_queue, on_batch=metrics.batch.observe)
        yield
        # uvicorn has stopped accepting and finished the requests in flight: drain and stop the worker
        await asyncio.to_thread(app.state.batcher.stop)

    app = FastAPI(title="pricetune", summary="Prices products from their descriptions.", lifespan=lifespan,
                  version="1")
    metrics.queue.set_function(lambda: app.state.batcher.depth if hasattr(app.state, "batcher") else 0)
    app.state.metrics = metrics
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])

    @app.middleware("http")
    async def count(request: Request, call_next):
        response = await call_next(request)
        path = request.url.path if request.url.path in {"/", "/price", "/price/file", "/health", "/metrics"} \
            else "other"
        metrics.requests.labels(path, str(response.status_code)).inc()
        return response

    def authorised(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key (send Authorization: Bearer <key>)",
                                headers={"WWW-Authenticate": "Bearer"})

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and int(length) > max_body:  # h11 has already refused a garbled length
            raise HTTPException(413, f"body over {max_body} bytes")
        chunks, size = [], 0
        stream = request.stream().__aiter__()
        while True:
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), body_timeout_s)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise HTTPException(408, f"the request body did not arrive within {body_timeout_s:g} s") from None
            size += len(chunk)
            if size > max_body:
                raise HTTPException(413, f"body over {max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def parse(model, body: bytes):
        try:
            return model.model_validate_json(body)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg'].removeprefix('Value error, ')}"
                                 for err in e.errors())
            raise HTTPException(400, problems) from None

    async def price_texts(request: Request, texts: list[str]) -> list[tuple[float | None, str | None]]:
        batcher: Batcher = request.app.state.batcher
        try:
            future = batcher.submit(texts, request_timeout_s)
        except Overloaded:
            raise HTTPException(503, "the service is at capacity; retry shortly",
                                headers={"Retry-After": str(RETRY_AFTER_S)}) from None
        except WorkerDown as e:
            raise HTTPException(503, str(e)) from None
        waiting = asyncio.wrap_future(future)
        deadline = time.monotonic() + request_timeout_s
        while True:  # wait, checking now and then whether the client is still there
            try:
                return await asyncio.wait_for(asyncio.shield(waiting), min(0.25, max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    future.cancel()
                    raise HTTPException(504, f"no price within {request_timeout_s:g} s") from None
                if await request.is_disconnected():
                    future.cancel()  # dropped before it costs model time, if it has not started
                    raise HTTPException(499, "client closed the request") from None
            except DeadlinePassed:
                raise HTTPException(504, f"no price within {request_timeout_s:g} s") from None
            except WorkerDown as e:
                raise HTTPException(503, str(e)) from None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return render(label, api_key is not None)

    @app.get("/health")
    async def health(request: Request):
        batcher: Batcher = request.app.state.batcher
        body = {"model": label, "batches": batcher.batches, "queue": batcher.depth}
        if not batcher.alive:
            return JSONResponse({"status": "down", "error": batcher.error or "the pricing worker is not running",
                                 **body}, status_code=503)
        return {"status": "ok", **body}

    @app.get("/metrics", dependencies=[Depends(authorised)], include_in_schema=False)
    async def prometheus():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/price", response_model=PriceReply, response_model_exclude_unset=True,
              dependencies=[Depends(authorised)],
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": PriceRequest.model_json_schema()}}}})
    async def price(request: Request):
        start = time.perf_counter()
        req = parse(PriceRequest, await read_body(request))
        outcomes = await price_texts(request, req.texts)
        metrics.latency.labels("/price").observe(time.perf_counter() - start)
        if req.description is not None:
            value, error = outcomes[0]
            return PriceReply(price=value, error=error) if value is None else PriceReply(price=value)
        errors = [e for _, e in outcomes]
        if any(errors):
            return PriceReply(prices=[p for p, _ in outcomes], errors=errors)
        return PriceReply(prices=[p for p, _ in outcomes])

    @app.post("/price/file", response_model=FileReply, dependencies=[Depends(authorised)],
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": FileRequest.model_json_schema()}}}})
    async def price_file(request: Request):
        start = time.perf_counter()
        req = parse(FileRequest, await read_body(request))
        rows, columns = read_table(req.format, req.content)
        texts = [row_text(r) for r in rows]
        outcomes: list[tuple[float | None, str | None]] = [(None, "empty description")] * len(rows)
        todo = [i for i, t in enumerate(texts) if t]
        for s in range(0, len(todo), MAX_ITEMS):
            chunk = todo[s:s + MAX_ITEMS]
            for i, outcome in zip(chunk, await price_texts(request, [texts[i] for i in chunk])):
                outcomes[i] = outcome
        metrics.latency.labels("/price/file").observe(time.perf_counter() - start)
        return FileReply(content=write_table(req.format, rows, columns, outcomes),
                         priced=sum(p is not None for p, _ in outcomes),
                         failed=sum(p is None for p, _ in outcomes))

    return app


# ------------------------------------------------------------------------------------------------
# Files of descriptions


TEXT_FIELDS = ("description", "prompt", "text")


def read_table(fmt: str, content: str) -> tuple[list[dict], list[str]]:
    """Rows of a CSV or JSONL upload, and the CSV's columns in order."""
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(content))
        rows = list(reader)
        columns = list(reader.fieldnames or [])
        if not any(c in columns for c in TEXT_FIELDS):
            raise HTTPException(400, f"the CSV needs a column named one of {', '.join(TEXT_FIELDS)} "
                                f"(found: {', '.join(columns) or 'none'})")
    else:
        rows, columns = [], []
        for n, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise HTTPException(400, f"line {n}: not JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise HTTPException(400, f"line {n}: each line must be a JSON object")
            rows.append(row)
    if not rows:
        raise HTTPException(400, "the file holds no rows")
    if len(rows) > MAX_FILE_ROWS:
        raise HTTPException(413, f"at most {MAX_FILE_ROWS} rows per file (got {len(rows)})")
    return rows, columns


def row_text(row: dict) -> str:
    for key in TEXT_FIELDS:
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return ""


def write_table(fmt: str, rows: list[dict], columns: list[str], outcomes) -> str:
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns + [c for c in ("price", "error") if c not in columns])
        writer.writeheader()
        for row, (price, error) in zip(rows, outcomes):
            writer.writerow({**row, "price": "" if price is None else f"{price:.2f}", "error": error or ""})
        return out.getvalue()
    return "".join(json.dumps({**row, "price": price, **({"error": error} if error else {})}) + "\n"
                   for row, (price, error) in zip(rows, outcomes))
