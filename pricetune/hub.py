"""Hugging Face Hub: the token, repo names, and pushing an adapter without ever losing local work.

    pricetune push runs/price-2026-11-29_12.00.00-lite                 # HF_USER/<run name>, private
    pricetune push runs/price-2026-11-29_12.00.00-lite --repo-id me/my-pricer
    pricetune push merged/                                             # an export: HF_USER/<run name>-merged

The token comes from HF_TOKEN or huggingface_hub's own login store, is passed in memory to the calls
that need it, and is never written, logged or added to a git credential store. Set HF_ENDPOINT to
talk to another Hub (tests use a local fake one).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import yaml

from .baselines.neighbours import INDEX_FILE
from .errors import PricetuneError

# What goes to the Hub, and nothing else: the adapter (and a regress run's head scale), its tokenizer,
# the model card, and the resolved config with local paths taken out (see `public_config`); for a run
# trained with --neighbours, its neighbours.json too, the text and prices of its training items
UPLOAD = ("adapter_config.json", "adapter_model.safetensors", "regression_head.json", "tokenizer.json",
          "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "vocab.json", "merges.txt",
          "tokenizer.model", "vocab.txt", "README.md")
# a run that trained every weight (finetune full) has no adapter: the whole model goes instead
FULL_MODEL = ("config.json", "model.safetensors")
CONFIG_NAME = "pricetune_config.yaml"
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
        raise PricetuneError("no Hugging Face token: set HF_TOKEN to a token with write access (or run `hf auth login`)")
    from huggingface_hub import HfApi

    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)
    return f"{api.whoami(token=token)['name']}/{run_name}"


def public_config(trained: dict) -> str:
    """A run's resolved config (its config.yaml, read) without local paths (output directory, local dataset
    and base folders)."""
    from .config import public_value

    cfg = {**trained, "output_dir": None}
    for key in ("dataset", "base_model"):
        cfg[key] = public_value(cfg.get(key))
    return yaml.safe_dump(cfg, sort_keys=False)


def scrub_base_model(staging: Path, base_model: str | None) -> None:
    """The base as the Hub may see it, in the staged card and adapter config: the card's metadata names a
    Hub model id or none (the Hub refuses a card that names a local folder; cards written before said
    `<local: NAME>`, and PEFT's card in a checkpoint its path), and the adapter a local base by its last
    part only, as the config does."""
    import json

    from .config import hub_base_model, public_value

    card = staging / "README.md"
    parts = card.read_text(encoding="utf-8").split("---\n", 2) if card.is_file() else []
    if len(parts) == 3 and parts[0] == "":
        front = yaml.safe_load(parts[1]) or {}
        front.pop("base_model", None)
        # PEFT's card in a checkpoint tags the base as `base_model:adapter:<its path>`; the Hub adds its own
        if "tags" in front:
            front["tags"] = [t for t in front["tags"] or [] if not str(t).startswith("base_model:")]
        if hub_base_model(base_model):
            front = {"base_model": hub_base_model(base_model), **front}
        card.write_text(f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n{parts[2]}", encoding="utf-8")
    adapter = staging / "adapter_config.json"
    if adapter.is_file():
        peft = json.loads(adapter.read_text(encoding="utf-8"))
        if peft.get("base_model_name_or_path"):
            peft["base_model_name_or_path"] = public_value(peft["base_model_name_or_path"])
        adapter.write_text(json.dumps(peft, indent=2) + "\n", encoding="utf-8")


def stage_export(folder: Path, staging: Path) -> list[str]:
    """A folder `pricetune export` wrote, as it is (the model, its tokenizer, a regress head's scale, a GGUF
    and its Modelfile), its EXPORT_INFO without the local paths of the run it came from and its data."""
    import json
    import shutil

    from .config import EXPORT_INFO, public_value

    names = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name != EXPORT_INFO:
            shutil.copy2(path, staging / path.name)
            names.append(path.name)
    info = json.loads((folder / EXPORT_INFO).read_text(encoding="utf-8"))
    for key in ("run", "dataset", "base_model"):
        info[key] = public_value(info.get(key))
    (staging / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return names + [EXPORT_INFO]


def stage_upload(run_dir: Path, staging: Path) -> list[str]:
    """Copy the allowlisted files of a run (or checkpoint), or an exported folder, into `staging`; returns
    their names."""
    import shutil

    from .config import is_export

    if is_export(run_dir):
        return stage_export(run_dir, staging)
    names = []
    full = not (run_dir / "adapter_config.json").is_file() and (run_dir / "model.safetensors").is_file()
    for name in UPLOAD + (FULL_MODEL if full else ()):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, staging / name)
            names.append(name)
    home = run_dir if (run_dir / "config.yaml").is_file() else run_dir.parent
    # a run trained with neighbours prices by looking items up in its training items: they travel too
    if (home / INDEX_FILE).is_file():
        shutil.copy2(home / INDEX_FILE, staging / INDEX_FILE)
        names.append(INDEX_FILE)
    if (home / "config.yaml").is_file():
        trained = yaml.safe_load((home / "config.yaml").read_text(encoding="utf-8")) or {}
        (staging / CONFIG_NAME).write_text(public_config(trained), encoding="utf-8")
        names.append(CONFIG_NAME)
        scrub_base_model(staging, trained.get("base_model"))
    if "adapter_config.json" not in names and "model.safetensors" not in names:
        raise PricetuneError(f"{run_dir} holds no adapter (adapter_config.json) or model (model.safetensors) to push")
    return names


def ensure_repo(api, repo_id: str, private: bool) -> None:
    """Create the repo as asked; an existing repo must have the visibility asked for, since
    create_repo(exist_ok=True) never changes it and a private adapter would go public."""
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if private and not getattr(api.repo_info(repo_id, repo_type="model"), "private", True):
        raise PricetuneError(
            f"{repo_id} already exists and is public, and this push asked for a private repo; nothing was "
            "uploaded. Make the repo private on the Hub, choose another --repo-id, or push with --public")


def push_folder(
    run_dir: str | Path,
    repo_id: str,
    private: bool = True,
    token: str | None = None,
    retries: int = 3,
    backoff: float = 2.0,
    log: Callable[[str], None] = print,
) -> str:
    """Create the repo (private by default) and upload the run's allowlisted files; retry transient errors."""
    import tempfile

    from huggingface_hub import HfApi

    # HF_ENDPOINT is read per call (huggingface_hub reads it once, at import)
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    with tempfile.TemporaryDirectory(prefix="pricetune-push-") as tmp:
        stage_upload(Path(run_dir), Path(tmp))
        for attempt in range(retries + 1):
            try:
                ensure_repo(api, repo_id, private)
                api.upload_folder(repo_id=repo_id, folder_path=tmp,
                                  commit_message="Upload a model trained with pricetune")
                return repo_id
            except PricetuneError:
                raise
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


def export_name(folder: Path) -> str | None:
    """The repo name of a folder `pricetune export` wrote: its run's name and what it is ("...-merged",
    "...-gguf"); None for any other folder."""
    import json

    from .config import EXPORT_INFO, is_export

    if not is_export(folder):
        return None
    info = json.loads((folder / EXPORT_INFO).read_text(encoding="utf-8"))
    # folders written before the run's name was recorded name it by the run's folder
    name = info.get("run_name") or Path(info.get("run") or folder.resolve()).name
    return f"{name}-{'gguf' if info.get('format') == 'gguf' else 'merged'}"


def push_run(run_dir: str | Path, repo_id: str | None = None, private: bool = True, log=print,
             retries: int = 3, backoff: float = 2.0) -> str:
    """`pricetune push`: push a finished run's adapter, or a folder `pricetune export` wrote (to
    HF_USER/<run name>-merged or -gguf). Raises PricetuneError with the reason."""
    from .config import load_run_config

    run_dir = Path(run_dir)
    name, wanted, hub_user = export_name(run_dir), repo_id, None
    if name is None:
        cfg = load_run_config(run_dir)
        if not (run_dir / cfg.weights_file).is_file():
            raise PricetuneError(f"{run_dir} holds no {cfg.weights_file}; is it a finished run?")
        name, wanted, hub_user = cfg.run_name, repo_id or cfg.hub_model_id, cfg.hub_user
    token = get_token()
    if token is None:  # the Hub takes no upload without one, whatever the repo
        raise PricetuneError("no Hugging Face token: set HF_TOKEN to a token with write access (or run `hf auth "
                             f"login`), then: {push_command(run_dir, repo_id)}")
    try:
        target = resolve_repo_id(name, wanted, hub_user, token)
    except PricetuneError:
        raise
    except Exception as e:  # whoami with a refused or expired token
        raise PricetuneError(f"could not find your Hub user name: {describe_failure(e, token)}. Everything is "
                             f"safe in {run_dir}; retry with: {push_command(run_dir, repo_id)}") from None
    try:
        return push_folder(run_dir, target, private, token, retries, backoff, log)
    except PricetuneError:
        raise
    except Exception as e:
        raise PricetuneError(
            f"push to {target} failed: {describe_failure(e, token)}. Everything is safe in {run_dir}; "
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
