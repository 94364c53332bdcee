"""One worker thread owns the model and prices queued descriptions in shared batches, with backpressure.

The model is not thread-safe and a CPU or GPU is best fed whole batches. Jobs (one per request) wait
in a queue bounded in descriptions, not jobs; the worker takes descriptions from the oldest jobs, up
to `batch_size` at a time (a job of 1,024 descriptions is priced in slices of `batch_size`, sharing
batches with the jobs around it), waiting at most `max_wait_ms` after the first for company.

- A full queue refuses at once (`Overloaded`: the app answers 503 with Retry-After).
- A job has one deadline; past it, or once its client left (its future cancelled), its remaining
  descriptions are dropped before they cost model time, also while a failed batch is retried.
- An item the model cannot price fails alone, with its reason: a failed batch is logged (the
  exception's type and where it was raised, never the texts) and retried item by item.
- Whole batches failing `unhealthy_after` times in a row make `healthy` false (/health answers 503).
- A worker that dies fails every queued job, and a job submitted while it dies, with `WorkerDown`.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

log = logging.getLogger("pricetune.serving")

# An item's outcome: (price, None) or (None, reason)
Outcome = tuple[float | None, str | None]


class Overloaded(Exception):
    """The queue is full: try again shortly."""


class WorkerDown(Exception):
    """The worker thread is not running (stopped, or died on an unexpected error)."""


class DeadlinePassed(Exception):
    """The job's deadline passed before all of it was priced."""


@dataclass(eq=False)
class Job:
    texts: list[str]
    deadline: float  # time.monotonic()
    future: Future = field(default_factory=Future)
    taken: int = 0  # descriptions handed to the model so far
    outcomes: list = field(default_factory=list)

    def __post_init__(self):
        self.outcomes = [None] * len(self.texts)

    def live(self, now: float) -> bool:
        """Still wanted; a job past its deadline is failed here, once."""
        if self.future.done():
            return False
        if self.deadline < now:
            _settle(self.future, error=DeadlinePassed())
            return False
        return True


def _settle(future: Future, result=None, error: Exception | None = None) -> None:
    """Resolve a future unless its client cancelled it meanwhile."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass


def where_raised(e: BaseException) -> str:
    """The exception's type and the line that raised it: enough to debug, and no request text."""
    frames = traceback.extract_tb(e.__traceback__)
    place = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return f"{type(e).__name__}{place}"


class Batcher:
    def __init__(self, pricer, batch_size: int = 16, max_wait_ms: float = 10.0, max_queue: int = 8192,
                 on_batch=None, unhealthy_after: int = 3):
        """`pricer` needs `price_items(texts) -> list[float | None]`; `max_queue`: descriptions that may
        wait; `on_batch(n_items)` is called after each model batch (metrics)."""
        self.pricer, self.batch_size, self.max_wait = pricer, batch_size, max_wait_ms / 1000
        self.max_queue, self.on_batch, self.unhealthy_after = max_queue, on_batch, unhealthy_after
        self.batches = 0
        self.failed_in_a_row = 0  # whole model batches that raised, since the last that did not
        self.error: str | None = None  # why the worker died, if it did
        self._jobs: deque[Job] = deque()
        self._waiting = 0  # descriptions queued and not yet handed to the model
        self._cond = threading.Condition()
        self._stopping = False
        self._dead = False
        self._in_flight: list[Job] = []
        self._worker = threading.Thread(target=self._run, daemon=True, name="pricetune-batcher")
        self._worker.start()

    # --- the client side --------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._worker.is_alive() and not self._stopping and not self._dead

    @property
    def healthy(self) -> bool:
        return self.alive and self.failed_in_a_row < self.unhealthy_after

    @property
    def depth(self) -> int:
        """Descriptions waiting for the model."""
        return self._waiting

    def submit(self, texts: list[str], deadline: float) -> Future:
        """Queue a job (deadline: a time.monotonic() value); its future resolves to one Outcome per text.
        Raises Overloaded or WorkerDown."""
        with self._cond:
            if not self.alive:
                raise WorkerDown(self.error or "the pricing worker is not running")
            # one job larger than the whole queue may still run alone, when nothing else waits
            if self._waiting and self._waiting + len(texts) > self.max_queue:
                raise Overloaded()
            job = Job(list(texts), deadline)
            self._jobs.append(job)
            self._waiting += len(texts)
            self._cond.notify()
        return job.future

    def stop(self, timeout: float = 60.0) -> None:
        """Stop taking jobs, price those already queued, and end the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._worker.join(timeout)

    # --- the worker -------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                slices = self._take()
                if slices is None:
                    return
                self._in_flight = [job for job, _, _ in slices]
                if slices:
                    self._price(slices)
                self._in_flight = []
        except BaseException as e:  # anything unexpected: /health must say so, requests must not hang
            self._die(e)

    def _take(self) -> list[tuple[Job, int, int]] | None:
        """The next model batch as (job, start, end) slices; None when stopped and drained."""
        with self._cond:
            while not self._jobs:
                if self._stopping:
                    return None
                self._cond.wait(0.1)
            until = time.monotonic() + self.max_wait
            while self._waiting < self.batch_size and not self._stopping:
                left = until - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            slices, room, now = [], self.batch_size, time.monotonic()
            while self._jobs and room:
                job = self._jobs[0]
                if not job.live(now):  # cancelled or expired: the rest of it is never priced
                    self._jobs.popleft()
                    self._waiting -= len(job.texts) - job.taken
                    continue
                end = min(len(job.texts), job.taken + room)
                slices.append((job, job.taken, end))
                room -= end - job.taken
                self._waiting -= end - job.taken
                job.taken = end
                if end == len(job.texts):
                    self._jobs.popleft()
            return slices

    def _price(self, slices: list[tuple[Job, int, int]]) -> None:
        texts = [t for job, s, e in slices for t in job.texts[s:e]]
        try:
            outcomes = [self._outcome(p) for p in self.pricer.price_items(texts)]
            self.failed_in_a_row = 0
        except Exception as e:
            self.failed_in_a_row += 1
            log.warning("a batch of %d descriptions failed (%s); pricing them one by one", len(texts), where_raised(e))
            outcomes = self._one_by_one(slices)
        self.batches += 1
        if self.on_batch:
            self.on_batch(len(texts))
        i = 0
        for job, s, e in slices:
            job.outcomes[s:e] = outcomes[i:i + e - s]
            i += e - s
            if e == len(job.texts) and not job.future.done():
                _settle(job.future, result=job.outcomes)

    def _one_by_one(self, slices) -> list[Outcome]:
        """Each item of a failed batch alone, so a bad item fails by itself; a job whose deadline passes
        (or whose client left) meanwhile is dropped, not priced on."""
        out: list[Outcome] = []
        for job, s, e in slices:
            for text in job.texts[s:e]:
                if not job.live(time.monotonic()):
                    out.append((None, "dropped"))  # never read: the job's future is settled already
                    continue
                try:
                    out.append(self._outcome(self.pricer.price_items([text])[0]))
                except Exception as err:
                    log.warning("one description could not be priced (%s)", where_raised(err))
                    out.append((None, "this description could not be priced"))
        return out

    @staticmethod
    def _outcome(price) -> Outcome:
        if price is None:
            return None, "the model's answer held no price"
        return float(price), None

    def _die(self, e: BaseException) -> None:
        self.error = f"the pricing worker stopped: {type(e).__name__}: {str(e)[:200]}"
        log.error(self.error, exc_info=True)
        with self._cond:
            self._dead = True
            jobs, self._jobs, self._waiting = list(self._jobs), deque(), 0
        # submit() refuses from now on, and the lock orders the two: no job is left waiting
        for job in jobs:
            _settle(job.future, error=WorkerDown(self.error))
        for job in self._in_flight:
            _settle(job.future, error=WorkerDown(self.error))
