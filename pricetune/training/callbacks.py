"""Trainer callbacks of a run: a graceful stop on Ctrl-C / SIGTERM, metrics.jsonl, the
validation loss before the first step, the time the validation passes take, and each checkpoint's
push to the Hub."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from transformers import TrainerCallback

from .. import distributed as dist
from .. import hub
from ..errors import PricetuneError


class GracefulStop(TrainerCallback):
    """First Ctrl-C / SIGTERM: save a checkpoint at the next step boundary and stop. Second: exit now.

    Under a launcher the processes agree at every step end (one small all-reduce), so all of them
    save and stop at the same step even when the signal reaches them at different times."""

    # A terminal's Ctrl-C reaches the whole process group and torchrun then forwards a SIGTERM: one
    # request delivered twice. Only a signal after this many seconds counts as a second one.
    REPEAT_AFTER_S = 2.0

    def __init__(self):
        self.requested = None
        self._at = 0.0

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler)

    def _handle(self, signum, frame):
        if self.requested is not None and time.monotonic() - self._at < self.REPEAT_AFTER_S:
            return
        if self.requested is not None:
            sys.stderr.write("\nsecond interrupt: exiting now without saving\n")
            os._exit(128 + signum)
        self.requested, self._at = signal.Signals(signum).name, time.monotonic()
        sys.stderr.write(f"\n{self.requested}: saving a checkpoint at the end of this step, then stopping "
                         "(interrupt again to exit at once)\n")

    def on_step_end(self, args, state, control, **kwargs):
        if dist.any_process(self.requested is not None):
            self.requested = self.requested or "a stop signal on another process"
            control.should_save = True
            control.should_training_stop = True
        return control


class MetricsLogger(TrainerCallback):
    """Appends every log record (loss, lr, eval_loss, ...) with its step and wall-clock time (Unix
    seconds: a run trained in parts shows each part's pace) to metrics.jsonl."""

    def __init__(self, path: Path):
        self.path = path

    def drop_after(self, step: int) -> None:
        """On resuming from checkpoint `step`: the records of the steps after it (logged before the
        interruption, and about to be logged again) leave the file, so no step appears twice."""
        if not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").split("\n"):
            try:
                if line.strip() and json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:  # the last line, cut short when the run was killed mid-write
                continue
        staged = self.path.with_suffix(".partial")
        staged.write_text("".join(l + "\n" for l in kept), encoding="utf-8")
        os.replace(staged, self.path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            record = {"step": state.global_step, "epoch": state.epoch, "time": round(time.time(), 1), **logs}
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


class OpeningLoss(TrainerCallback):
    """The validation loss before the first step: logged, and kept in `path` for a resumed run."""

    def __init__(self, path: Path | None, log: Callable[[str], None]):
        self.path, self.log, self.loss = path, log, None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.loss is None and state.global_step == 0 and metrics and "eval_loss" in metrics:
            self.loss = metrics["eval_loss"]
            self.log(f"validation loss before training: {self.loss:.4f}")
            if self.path is not None:
                self.path.write_text(json.dumps({"eval_loss": self.loss}) + "\n")


class ValTime(TrainerCallback):
    """Seconds this session's validation passes took (the trainer's `eval_runtime`): part of a run's
    training time that is not learning, reported apart in summary.json."""

    def __init__(self):
        self.seconds = 0.0

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.seconds += float((metrics or {}).get("eval_runtime", 0.0))


class CheckpointPusher(TrainerCallback):
    """hub_strategy every_save: push the adapter at each checkpoint, as the reference's Trainer did,
    on a background thread so training never waits on the network. Pushes run one at a time, in
    order; a failure is reported once and stops further pushes; it never stops training or saving.
    `wait()` before the final push."""

    def __init__(self, cfg, log: Callable[[str], None] = print):
        from concurrent.futures import ThreadPoolExecutor

        self.cfg, self.log, self.repo_id, self.failed = cfg, log, None, False
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pricetune-push")
        self.pending = []

    def on_save(self, args, state, control, **kwargs):
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if checkpoint.is_dir() and not self.failed:
            # a copy of the files now: rotation may delete the checkpoint before the push runs
            import shutil
            import tempfile

            snapshot = Path(tempfile.mkdtemp(prefix="pricetune-ckpt-"))
            try:  # what the final push carries, neighbours.json included: a pushed checkpoint loads as it is
                hub.stage_upload(checkpoint, snapshot)
            except PricetuneError:
                shutil.rmtree(snapshot, ignore_errors=True)
                return
            self.pending.append(self.pool.submit(self.push, snapshot, state.global_step))

    def push(self, checkpoint: Path, step: int) -> None:
        import shutil

        try:
            if self.failed:
                return
            token = hub.get_token()
            try:
                self.repo_id = self.repo_id or hub.resolve_repo_id(self.cfg.run_name, self.cfg.hub_model_id,
                                                               self.cfg.hub_user, token)
                hub.push_folder(checkpoint, self.repo_id, self.cfg.hub_private, token, retries=1, log=self.log)
                self.log(f"pushed checkpoint {step} to {self.repo_id}")
            except Exception as e:
                self.failed = True
                self.log(f"checkpoint push failed ({hub.describe_failure(e, token)}); training goes on, "
                         "and the final adapter push will be tried at the end")
        finally:
            shutil.rmtree(checkpoint, ignore_errors=True)

    def wait(self) -> None:
        for future in self.pending:
            future.result()
        self.pool.shutdown(wait=True)
