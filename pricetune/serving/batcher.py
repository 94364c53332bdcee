"""One worker thread owns the model and prices queued requests in shared batches, with backpressure.

The model is not thread-safe and a CPU or GPU is best fed whole batches. Requests wait in a bounded
queue; the worker takes whatever arrived within `max_wait_ms` of the first (up to `batch_size`
descriptions) and prices them together. A full queue refuses at once (`Overloaded`: the app answers
503 with Retry-After) instead of growing without bound; a job whose deadline passed or whose client
left (its future cancelled) is dropped before it costs model time; an item the model cannot price
fails alone, with its reason, while the rest of its batch gets prices.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field


class Overloaded(Exception):
    """The queue is full: try again shortly."""


class WorkerDown(Exception):
    """The worker thread is not running (stopped, or died on an unexpected error)."""


class DeadlinePassed(Exception):
    """The job waited past its deadline and was dropped unpriced."""


@dataclass
class Job:
    texts: list[str]
    deadline: float  # time.monotonic()
    future: Future = field(default_factory=Future)


# An item's outcome: (price, None) or (None, reason)
Outcome = tuple[float | None, str | None]


class Batcher:
    def __init__(self, pricer, batch_size: int = 16, max_wait_ms: float = 10.0, max_queue: int = 64,
                 on_batch=None):
        """`pricer` needs `price_items(texts) -> list[float | None]`; `on_batch(n_items)` is called
        after each batch priced (metrics)."""
        self.pricer, self.batch_size, self.max_wait = pricer, batch_size, max_wait_ms / 1000
        self.jobs: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self.on_batch = on_batch
        self.batches = 0
        self.error: str | None = None  # why the worker died, if it did
        self._current: list[Job] = []
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._run, daemon=True, name="pricetune-batcher")
        self._worker.start()

    # --- the client side --------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._worker.is_alive() and not self._stopping.is_set()

    @property
    def depth(self) -> int:
        return self.jobs.qsize()

    def submit(self, texts: list[str], timeout_s: float) -> Future:
        """Queue a job; its future resolves to one Outcome per text. Raises Overloaded or WorkerDown."""
        if not self.alive:
            raise WorkerDown(self.error or "the pricing worker is not running")
        job = Job(texts, time.monotonic() + timeout_s)
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise Overloaded() from None
        return job.future

    def stop(self, timeout: float = 60.0) -> None:
        """Stop taking jobs, price those already queued, and end the worker."""
        self._stopping.set()
        self._worker.join(timeout)

    # --- the worker -------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not (self._stopping.is_set() and self.jobs.empty()):
                try:
                    first = self.jobs.get(timeout=0.1)
                except queue.Empty:
                    continue
                batch = [first]
                size, until = len(first.texts), time.monotonic() + self.max_wait
                while size < self.batch_size:
                    try:
                        job = self.jobs.get(timeout=max(0.0, until - time.monotonic()))
                    except queue.Empty:
                        break
                    batch.append(job)
                    size += len(job.texts)
                self._current = batch
                self._price(batch)
                self._current = []
        except BaseException as e:  # anything unexpected: /health must say so, requests must not hang
            import logging

            self.error = f"the pricing worker stopped: {type(e).__name__}: {str(e)[:200]}"
            logging.getLogger("pricetune.serving").error(self.error, exc_info=True)
            for job in self._current:
                if not job.future.done():
                    job.future.set_exception(WorkerDown(self.error))
            self._fail_queued(WorkerDown(self.error))

    def _price(self, batch: list[Job]) -> None:
        now = time.monotonic()
        live = []
        for job in batch:
            if not job.future.set_running_or_notify_cancel():
                continue  # cancelled: the client left or gave up
            if job.deadline < now:
                job.future.set_exception(DeadlinePassed())
                continue
            live.append(job)
        if not live:
            return
        texts = [t for job in live for t in job.texts]
        outcomes = self.price_texts(texts)
        self.batches += 1
        if self.on_batch:
            self.on_batch(len(texts))
        start = 0
        for job in live:
            job.future.set_result(outcomes[start:start + len(job.texts)])
            start += len(job.texts)

    def price_texts(self, texts: list[str]) -> list[Outcome]:
        """Price a batch; if the batch fails, each item alone, so a bad item fails by itself."""
        try:
            return [self._outcome(p) for p in self.pricer.price_items(texts)]
        except Exception:
            if len(texts) == 1:
                return [(None, "this description could not be priced")]
            return [self.price_texts([t])[0] for t in texts]

    @staticmethod
    def _outcome(price) -> Outcome:
        if price is None:
            return None, "the model's answer held no price"
        return float(price), None

    def _fail_queued(self, error: Exception) -> None:
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(error)
