"""Loading a model to price with: a run directory (or one of its checkpoints), a Hub or local
adapter, a bare base model, or a model `pricetune export` wrote; the adapter's objective decides how it prices."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..baselines.neighbours import INDEX_FILE
from ..config import EXPORT_INFO, is_export
from ..errors import PricetuneError
from ..hub import CONFIG_NAME
from ..quiet import quiet_third_party
from .generate import generate_prices


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    max_length: int
    label: str
    objective: str = "generate"
    scale: object = None  # regress.PriceScale for regress runs
    merged: bool = False  # the LoRA update folded into the base's weights (`load_model(merge=True)`)
    neighbours: object = None  # baselines.neighbours.NeighbourIndex for runs trained with similar items' prices

    def prompts_for(self, prompts: list[str]) -> list[str]:
        """The prompts as the model was trained to read them: with similar items' prices if it was."""
        return self.neighbours.add_to_prompts(prompts) if self.neighbours is not None else prompts

    def price(self, prompts: list[str], decode: str = "greedy", batch_size: int = 16, samples: int = 64,
              progress: bool = False) -> list[tuple[str, float | None]]:
        """(text, price) for each prompt: decoding for generate runs, one forward pass for regress."""
        if not prompts:  # the tokenizer fails on an empty batch
            return []
        prompts = self.prompts_for(prompts)
        if self.objective == "regress":
            from ..regress import regress_prices

            return regress_prices(self.model, self.tokenizer, prompts, self.scale, self.max_length, batch_size,
                                  progress=progress)
        return generate_prices(self.model, self.tokenizer, prompts, self.max_length, batch_size, decode,
                               samples=samples, progress=progress)


def run_paths(run: str) -> tuple[Path, Path]:
    """(run directory, adapter directory) for a run or one of its checkpoints."""
    path = Path(run)
    if not (path / "config.yaml").is_file() and (path.parent / "config.yaml").is_file() \
            and path.name.startswith("checkpoint-"):
        return path.parent, path
    return path, path


def refuse_missing_local_adapter(adapter: str) -> None:
    """Stop at once on an adapter that can only be a local path and is not there. A Hub id is
    `user/name`; a path that cannot be one, or whose first folder exists here (`runs/nope`), is a
    mistyped folder, and asking the Hub for it would only fail, after retries when offline."""
    local = Path(adapter)
    if local.exists():
        return
    hub_shaped = not local.is_absolute() and not adapter.startswith(".") and len(local.parts) == 2
    if not hub_shaped or local.parent.is_dir():
        hint = f" ({local.parent}/ is a folder here; for a Hub adapter of that name, run elsewhere)" if hub_shaped else ""
        raise PricetuneError(f"adapter {adapter!r} not found: no such folder{hint}")


def beside_adapter(adapter: str, name: str) -> Path | None:
    """The file `name` next to a local or Hub adapter (a Hub file lands in the Hub cache), or None."""
    local = Path(adapter)
    if local.is_dir():
        return local / name if (local / name).is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError

    try:
        return Path(hf_hub_download(adapter, name))
    except (OSError, EntryNotFoundError, HFValidationError):  # not there, offline, no access: the caller falls back
        return None


@dataclass
class Source:
    """What a run or an adapter says about loading it: the base, how it was trained to read prompts, the
    adapter's path and how it prices (a regress head's scale; look-alike items' prices)."""

    base_model: str | None
    label: str
    quantization: str | None = None
    max_length: int = 128
    adapter_path: str | None = None
    objective: str = "generate"
    scale: object = None
    index: object = None
    full: bool = False  # finetune full: adapter_path holds the whole model (model.safetensors), not an adapter


def load_model(
    run: str | None = None,
    adapter: str | None = None,
    base_model: str | None = None,
    quantization: str | None = None,
    precision: str = "auto",
    merge: bool = True,
) -> LoadedModel:
    """A run directory, a Hub (or local) adapter, or a bare base model, ready to price.

    `merge`: fold the LoRA update into an unquantized base's weights (PEFT's `merge_and_unload`), so
    each projection is one matmul instead of three plus LoRA's per-call casts: on the CPU this prices
    in about half the time (`pricetune bench eval` on a regress run, bench/results/merge-cpu.json).
    In bf16 the merged weights round differently, which moves a price by about 1% (the same benchmark
    reports it, with both sides' MAE). A quantized base keeps its adapter beside it: merging would
    round the update to 4 or 8 bits."""
    quiet_third_party()  # before PEFT imports bitsandbytes: `Pricer` users see what the command line shows
    from ..modeling import load_adapter, load_base_model, load_fully_trained, load_tokenizer, pick_precision

    if run is not None:
        src = source_of_run(run)
    elif adapter is not None:
        src = source_of_adapter(adapter, base_model)
    elif base_model is not None:
        folder = exported_folder(base_model)
        src = source_of_export(folder, base_model) if folder else Source(base_model, f"{base_model} (no adapter)")
        base_model = src.base_model
    else:
        raise PricetuneError("say what to load: a run directory, --adapter HUB_ID, or --base-model NAME --no-adapter")
    base_model = base_model or src.base_model
    quantization = quantization or src.quantization or "4bit"
    precision = pick_precision(precision)
    tokenizer = load_tokenizer(base_model, padding_side="left", saved=src.adapter_path)
    if src.full:  # every weight was trained: the run's folder holds the whole model
        model = load_fully_trained(src.adapter_path, precision)
    else:
        model = load_base_model(base_model, quantization, precision, objective=src.objective,
                                pad_token_id=tokenizer.pad_token_id)
    merged = src.full
    if src.adapter_path is not None and not src.full:
        model = load_adapter(model, src.adapter_path, quantized=quantization != "none")
        merged = merge and quantization == "none"
        if merged:
            model = model.merge_and_unload()
    model.eval()
    if src.objective == "generate":
        model.config.use_cache = True
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model, tokenizer, src.max_length, src.label, src.objective, src.scale, merged, src.index)


def source_of_run(run: str) -> Source:
    """A run directory (or one of its checkpoints), as its saved config describes it."""
    from ..config import load_run_config, unfinished

    run_dir, adapter_dir = run_paths(run)
    cfg = load_run_config(run_dir)
    full = cfg.finetune == "full"
    if not (adapter_dir / cfg.weights_file).is_file():
        raise PricetuneError(unfinished(run, cfg) if adapter_dir == run_dir else
                             f"{run} has no {cfg.weights_file}: not a complete checkpoint")
    src = Source(cfg.base_model, run_dir.name if adapter_dir == run_dir else f"{run_dir.name}/{adapter_dir.name}",
                 cfg.quantization, cfg.max_length, str(adapter_dir), cfg.objective, full=full)
    if cfg.neighbours:
        src.index = load_index(run_dir / INDEX_FILE, run)
    if cfg.objective == "regress":
        from ..regress import HEAD_FILE, PriceScale

        src.scale = PriceScale.load(adapter_dir if (adapter_dir / HEAD_FILE).is_file() else run_dir)
    return src


def exported_folder(base_model: str) -> str | None:
    """The folder of a model `pricetune export` wrote: the path itself, or a Hub repo that holds one
    (`pricetune push merged/`), downloaded; None for any other model (one small request asks a Hub id)."""
    if is_export(base_model):
        return base_model
    from ..data.sources import hub_offline

    if Path(base_model).exists() or base_model.count("/") != 1 or hub_offline():
        return None
    from huggingface_hub import hf_hub_download, snapshot_download

    try:
        hf_hub_download(base_model, EXPORT_INFO)
    except Exception:  # not there, no such repo, gated, offline: not an export
        return None
    return snapshot_download(base_model)


def source_of_export(folder: str, name: str | None = None) -> Source:
    """A model `pricetune export` wrote (in `folder`; `name`: as the user gave it), priced as its run priced:
    its objective (a regress folder with its head's scale), its prompt length, unquantized unless asked
    (it was written in the precision chosen)."""
    info = json.loads((Path(folder) / EXPORT_INFO).read_text(encoding="utf-8"))
    label, length = f"{name or folder} (exported from {info.get('run')})", int(info.get("max_length") or 128)
    if info.get("format") == "gguf":
        return Source(str(Path(folder) / info["file"]), label, "none", length)
    if info.get("objective") != "regress":
        return Source(folder, label, "none", length)
    from ..regress import PriceScale

    return Source(folder, label, "none", length, folder, "regress", PriceScale.load(folder), full=True)


def source_of_adapter(adapter: str, base_model: str | None) -> Source:
    """A Hub or local adapter, with the config and files a pushed run carries beside it."""
    from peft import PeftConfig

    refuse_missing_local_adapter(adapter)
    if is_export(adapter):
        raise PricetuneError(f"{adapter} holds a model `pricetune export` wrote, not an adapter: price it with "
                             f"--base-model {adapter} --no-adapter")
    try:
        peft_cfg = PeftConfig.from_pretrained(adapter)
    except Exception as e:  # no adapter there (a run that trained every weight?), network, auth
        if beside_adapter(adapter, "model.safetensors"):
            return source_of_pushed_model(adapter)
        raise PricetuneError(
            f"could not read adapter {adapter!r} ({type(e).__name__}); offline, pass --run RUN_DIR instead"
        ) from None
    # a pushed run carries its config as CONFIG_NAME; a local run directory as config.yaml
    pushed = beside_adapter(adapter, CONFIG_NAME) or (
        beside_adapter(adapter, "config.yaml") if Path(adapter).is_dir() else None)
    trained = {}
    if pushed is not None:
        import yaml

        trained = yaml.safe_load(pushed.read_text(encoding="utf-8")) or {}
    # adapters of the embedded SmolLM2 (loaded from GGUF) were saved with "None" as their base before
    # pricetune named it in adapter_config.json; the run's config names it
    recorded = peft_cfg.base_model_name_or_path
    base_model = base_model or (recorded if recorded not in (None, "None") else trained.get("base_model"))
    if base_model is None:
        raise PricetuneError(f"adapter {adapter!r} does not say which base model it was trained on; pass --base-model")
    if base_model.startswith("<local: "):  # a pushed adapter of a local base names it by its last part only
        raise PricetuneError(f"adapter {adapter!r} was trained on a base from its trainer's disk ({base_model}), which "
                             "did not travel with it: pass --base-model with the path to a copy of that base")
    # load and cut prompts as the run was trained
    src = Source(base_model, adapter, trained.get("quantization"), int(trained.get("max_length") or 128), adapter)
    if trained.get("neighbours"):
        src.index = load_index(beside_adapter(adapter, INDEX_FILE), adapter)
    if peft_cfg.task_type == "SEQ_CLS":  # a pushed regress run: its head's scale travels beside the adapter
        from ..regress import HEAD_FILE, PriceScale

        head = beside_adapter(adapter, HEAD_FILE)
        src.objective, src.scale = "regress", PriceScale.load(head.parent if head is not None else adapter)
    return src


def source_of_pushed_model(repo: str) -> Source:
    """A pushed (or copied) run that trained every weight: the whole model, its head's scale and config."""
    import yaml

    from ..regress import PriceScale

    folder = Path(repo)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo))
    config = folder / CONFIG_NAME if (folder / CONFIG_NAME).is_file() else folder / "config.yaml"
    trained = yaml.safe_load(config.read_text(encoding="utf-8")) if config.is_file() else {}
    if trained.get("finetune") != "full":
        raise PricetuneError(f"{repo} holds a model but no adapter, and no pricetune config saying how it was trained")
    src = Source(trained.get("base_model"), repo, "none", int(trained.get("max_length") or 128), str(folder),
                 "regress", PriceScale.load(folder), full=True)
    if trained.get("neighbours"):
        src.index = load_index(folder / INDEX_FILE, repo)
    return src


def load_index(path: Path | None, source: str):
    """The priced items a run trained with neighbours looks new items up in (`baselines.neighbours`)."""
    from ..baselines.neighbours import NeighbourIndex

    if path is None or not Path(path).is_file():
        raise PricetuneError(f"{source} was trained with similar items' prices in its prompts (neighbours), but its "
                             f"{INDEX_FILE} is missing: without those items it cannot price as it was trained")
    return NeighbourIndex.load(path).fit()
