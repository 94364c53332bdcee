"""Hugging Face Hub: the token, repo names, and pushing an adapter without ever losing local work.

    pricetune push runs/price-2026-11-29_12.00.00-lite                 # HF_USER/<run name>, private
    pricetune push runs/price-2026-11-29_12.00.00-lite --repo-id me/my-pricer

The token comes from HF_TOKEN or huggingface_hub's own login store, is passed in memory to the calls
that need it, and is never written, logged or added to a git credential store. Set HF_ENDPOINT to
talk to another Hub (tests use a local fake one).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from .errors import PricetuneError

# Files of a run that belong on the Hub: the adapter, its tokenizer, card and config (not checkpoints)
IGNORE = ["checkpoint-*", "checkpoint-*/**", "eval-*", "eval-*/**", "*.tmp", "runs/**", "metrics.jsonl",
          ".staging/**", "optimizer.pt", "scheduler.pt", "rng_state*.pth", "scaler.pt", "trainer_state.json",
          "training_args.bin", "initial_eval_loss.json"]
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


def get_token() -> str | None:
    from huggingface_hub import get_token as hf_get_token

    return hf_get_token()


def _redact(text: str, token: str | None) -> str:
    return text.replace(token, "<token>") if token else text


def _status(err: Exception) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def is_transient(err: Exception) -> bool:
    status = _status(err)
    if status is not None:
        return status in TRANSIENT_STATUS
    name = type(err).__name__
    return any(k in name for k in ("Timeout", "Connect", "Connection", "Network")) or isinstance(err, OSError)


def describe_failure(err: Exception, token: str | None) -> str:
    status = _status(err)
    reason = {
        401: "the token was refused (401): set HF_TOKEN to a valid token with write access",
        403: "permission denied (403): the token needs write access to this user or organisation, "
             "or the repo name belongs to someone else (choose another with --repo-id)",
        409: "the repo name is taken or conflicts (409): choose another with --repo-id",
    }.get(status)
    if reason is None:
        reason = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
    return _redact(reason, token)


def resolve_repo_id(run_name: str, repo_id: str | None, hub_user: str | None, token: str | None) -> str:
    """HF_USER/<run_name>, as in the reference, unless a repo id is given."""
    if repo_id:
        return repo_id
    if hub_user:
        return f"{hub_user}/{run_name}"
    if token is None:
        raise PricetuneError("no Hugging Face token: set HF_TOKEN (or run `hf auth login`), or pass --repo-id")
    from huggingface_hub import HfApi

    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)
    return f"{api.whoami(token=token)['name']}/{run_name}"


def push_folder(
    run_dir: str | Path,
    repo_id: str,
    private: bool = True,
    token: str | None = None,
    retries: int = 3,
    backoff: float = 2.0,
    log: Callable[[str], None] = print,
) -> str:
    """Create the repo (private by default) and upload the run's adapter files; retry transient errors."""
    from huggingface_hub import HfApi

    # HF_ENDPOINT is read per call (huggingface_hub reads it once, at import)
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    for attempt in range(retries + 1):
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            api.upload_folder(
                repo_id=repo_id, folder_path=str(run_dir), ignore_patterns=IGNORE,
                commit_message="Upload adapter trained with pricetune",
            )
            return repo_id
        except Exception as e:  # the hub client raises many types; classify by status
            if attempt < retries and is_transient(e):
                wait = backoff * (2**attempt)
                log(f"push failed ({describe_failure(e, token)}); retrying in {wait:.0f}s")
                time.sleep(wait)
                continue
            raise
    raise AssertionError("unreachable")


def push_command(run_dir: str | Path, repo_id: str | None) -> str:
    return f"pricetune push {run_dir}" + (f" --repo-id {repo_id}" if repo_id else "")


def push_run(run_dir: str | Path, repo_id: str | None = None, private: bool = True, log=print,
             retries: int = 3, backoff: float = 2.0) -> str:
    """`pricetune push`: push a finished run's adapter. Raises PricetuneError with the reason."""
    from .config import load_run_config

    run_dir = Path(run_dir)
    if not (run_dir / "adapter_config.json").is_file():
        raise PricetuneError(f"{run_dir} holds no adapter (adapter_config.json); is it a finished run?")
    cfg = load_run_config(run_dir)
    token = get_token()
    target = resolve_repo_id(cfg.run_name, repo_id or cfg.hub_model_id, cfg.hub_user, token)
    try:
        return push_folder(run_dir, target, private, token, retries, backoff, log)
    except PricetuneError:
        raise
    except Exception as e:
        raise PricetuneError(
            f"push to {target} failed: {describe_failure(e, token)}. The adapter is safe in {run_dir}; "
            f"retry with: {push_command(run_dir, target)}"
        ) from None


def push_after_training(run_dir: Path, cfg, log: Callable[[str], None] = print) -> str | None:
    """Step 7. Never raises: the run is already saved locally; on failure, say how to push later."""
    token = get_token()
    try:
        target = resolve_repo_id(cfg.run_name, cfg.hub_model_id, cfg.hub_user, token)
    except Exception as e:
        log(f"not pushed: {_redact(str(e), token)}\n  the adapter is in {run_dir}; "
            f"push later with: {push_command(run_dir, cfg.hub_model_id)}")
        return None
    try:
        url = push_folder(run_dir, target, cfg.hub_private, token, log=log)
    except Exception as e:
        log(f"push to {target} failed: {describe_failure(e, token)}\n  the adapter is in {run_dir}; "
            f"retry with: {push_command(run_dir, target)}")
        return None
    log(f"pushed adapter to https://huggingface.co/{url} ({'private' if cfg.hub_private else 'public'})")
    return url


class CheckpointPusher:
    """hub_strategy every_save: push the adapter at each checkpoint, as the reference's Trainer did.
    A failure is reported once and stops further pushes; it never stops training or saving."""

    def __init__(self, cfg, log: Callable[[str], None] = print):
        from transformers import TrainerCallback

        pusher = self
        self.cfg, self.log, self.repo_id, self.failed = cfg, log, None, False

        class _Callback(TrainerCallback):
            def on_save(self, args, state, control, **kwargs):
                pusher.push(Path(args.output_dir) / f"checkpoint-{state.global_step}", state.global_step)

        self.callback = _Callback()

    def push(self, checkpoint: Path, step: int) -> None:
        if self.failed or not checkpoint.is_dir():
            return
        token = get_token()
        try:
            self.repo_id = self.repo_id or resolve_repo_id(self.cfg.run_name, self.cfg.hub_model_id,
                                                           self.cfg.hub_user, token)
            push_folder(checkpoint, self.repo_id, self.cfg.hub_private, token, retries=1, log=self.log)
            self.log(f"pushed checkpoint {step} to {self.repo_id}")
        except Exception as e:
            self.failed = True
            self.log(f"checkpoint push failed ({describe_failure(e, token)}); training goes on, "
                     "and the final adapter push will be tried at the end")
