"""The `pricetune` command line.

    pricetune train                         # demo: embedded SmolLM2-135M on diamonds, on this CPU
    pricetune prepare catalog.csv --out data/mine  # a raw catalog -> train/val/test + a data card
    pricetune train --preset lite --dry-run # the reference lite recipe, resolved, nothing loaded
    pricetune train --config amazon-18k-regress  # the shipped Amazon items, on a CPU
    pricetune push RUN_DIR                  # private, HF_USER/<run name>; or --repo-id USER/NAME
    pricetune evaluate RUN_DIR --limit 200  # --decode greedy|expected|median for a generate run
    pricetune evaluate --baseline tfidf --dataset amazon-18k --limit 0
    pricetune ensemble --dataset DIR --member RUN_DIR --member tfidf --out ENS_DIR
    pricetune ensemble --refit ENS_DIR --swap RUN_DIR=REFIT_RUN_DIR --out ENS_REFIT   # same weights, train + val
    pricetune predict --run RUN_DIR "Title: ..."
    pricetune predict --ensemble ENS_DIR --file items.csv --out priced.csv
    pricetune serve --run RUN_DIR --port 8000   # POST /price {"description": "..."}
    pricetune export RUN_DIR --out merged/  # adapter folded into the base: a plain transformers model
    pricetune export RUN_DIR --format gguf --quant q8_0 --out gguf/   # llama.cpp / Ollama
    pricetune bench train|eval

Errors the user can fix print one message and exit 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from . import distributed as dist
from .errors import PricetuneError
from .quiet import quiet_third_party


def _field_options(parser: argparse.ArgumentParser) -> list[str]:
    """One --option per RunConfig field, help text from the field's description."""
    from .config import DEFAULT_PRESET, DEMO_DATA_ONLY, PRESETS, RunConfig

    group = parser.add_argument_group(
        f"config overrides (defaults < --preset < --config YAML < these; [default] is the {DEFAULT_PRESET} preset's)")
    names = []
    for name, field in RunConfig.model_fields.items():
        if name == "preset":
            continue
        flag = "--" + name.replace("_", "-")
        ann = field.annotation
        if get_origin(ann) in (Union, UnionType):  # Optional[X] -> X
            ann = next(a for a in get_args(ann) if a is not type(None))
        shown = PRESETS[DEFAULT_PRESET].get(name, field.default)
        if name in DEMO_DATA_ONLY and DEFAULT_PRESET == "demo":
            other = "all rows" if field.default is None else field.default
            shown = f"{shown} on the demo data; {other} with another --dataset"
        # argparse %-formats help strings: a bare % in a description must be doubled
        help_text = f"{field.description} [default: {shown}]".replace("%", "%%")
        if get_origin(ann) is Literal:
            group.add_argument(flag, dest=name, choices=list(get_args(ann)), default=None, help=help_text)
        elif ann is bool:
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(flag, dest=name, type=ann, default=None, metavar=ann.__name__.upper(), help=help_text)
        names.append(name)
    return names


def _overrides(ns: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    return {n: getattr(ns, n) for n in names if getattr(ns, n, None) is not None}


# ------------------------------------------------------------------------------------------------
# Subcommands


def as_trained(cfg):
    """The config with what training resolves when it starts (the fast path, compiling: by the device)
    resolved the same way, as training saves it in config.yaml."""
    if cfg.fast is not None:
        return cfg
    from .modeling import detect_device
    from .training.common import resolve_fast

    fast, compiling, _ = resolve_fast(cfg, detect_device())
    return cfg.model_copy(update=dict(fast=fast, torch_compile=compiling))


def refuse_resume_changes(ns, names: list[str], saved) -> None:
    """A resumed run trains as it began, from its saved config.yaml. The command that started it, plus
    --resume, is welcome; a setting that differs from the saved one would be silently ignored, so it is
    refused, as is --overwrite (it would delete what --resume continues)."""
    from .config import resolve_config

    if ns.overwrite:
        raise PricetuneError("--resume continues the run in --output-dir and --overwrite would delete it: give one")
    given = _overrides(ns, names)
    if not (ns.preset or ns.config or set(given) - {"output_dir"}):
        return
    wanted = as_trained(resolve_config(ns.preset, ns.config, given)).model_dump()
    skip = {"output_dir"} | ({"run_name"} if "run_name" not in given else set())  # a new run's name is the clock's
    differ = [f"{k} ({v!r} in the run, {wanted[k]!r} given)" for k, v in as_trained(saved).model_dump().items()
              if k not in skip and wanted[k] != v]
    if differ:
        raise PricetuneError(
            f"--resume continues {ns.output_dir} with its saved config.yaml, so these settings would not apply: "
            f"{'; '.join(differ)}. Leave them out, or start a new run with them (another --output-dir)")


def cmd_train(ns, names) -> int:
    from .config import resolve_config

    if ns.resume:
        from .config import load_run_config

        if not ns.output_dir:
            raise PricetuneError("--resume needs --output-dir RUN_DIR (the run to continue)")
        cfg = load_run_config(ns.output_dir)
        refuse_resume_changes(ns, names, cfg)
        cfg.output_dir = ns.output_dir
    else:
        cfg = resolve_config(ns.preset, ns.config, _overrides(ns, names))
    if ns.dry_run:
        from .training import plan

        if not dist.is_main():  # under a launcher: one plan, from rank 0
            return 0
        print("# resolved config")
        print(cfg.to_yaml(), end="")
        print("# plan (dry run: no weights loaded, nothing written)")
        print(plan(cfg))
        return 0
    from .training import train

    if dist.launched() and not ns.resume:
        cfg.run_name = dist.agree(cfg.run_name)  # each process's clock named it; rank 0's name wins
    summary = train(cfg, resume=ns.resume, overwrite=ns.overwrite)
    if not dist.is_main():
        return 0
    print("summary: " + json.dumps(summary, indent=2))
    if not summary.get("pushed_to") and not cfg.push_to_hub:
        saved = "model" if cfg.finetune == "full" else "adapter"
        print(f"to push the {saved} later: pricetune push {summary['run_dir']}")
    print(f"run: {summary['run_dir']}")
    return 0


def cmd_push(ns, _names) -> int:
    from .hub import push_run

    repo = push_run(ns.run_dir, ns.repo_id, private=not ns.public)
    print(f"pushed: https://huggingface.co/{repo}")
    return 0


def lazy(target: str):
    """The handler of a command whose code lives in `module:function`, imported when it runs (so
    `pricetune --help` loads no torch)."""
    def run(ns, _names) -> int:
        module, function = target.split(":")
        return getattr(importlib.import_module(module, __package__), function)(ns)

    return run


def build_parser() -> tuple[argparse.ArgumentParser, list[str]]:
    p = argparse.ArgumentParser(
        prog="pricetune",
        description="Fine-tune a language model with LoRA/QLoRA to price products from their descriptions, "
        "then evaluate it, predict with it and push it to the Hugging Face Hub.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    t = sub.add_parser("train", help="fine-tune a model to price: LoRA/QLoRA (the reference recipe, steps 0-7), "
                       "a price head, or every weight of a small encoder",
                       description="Fine-tune a model to price: a LoRA adapter (on a 4-bit base: QLoRA), with a price "
                       "head for `--objective regress`, or every weight of a small encoder (`--finetune full`). Values "
                       "resolve as defaults < --preset < --config < options.")
    names = add_train_arguments(t)
    t.set_defaults(func=cmd_train)
    for name, help_text, description, add_arguments, func in subcommands():
        sp = sub.add_parser(name, help=help_text, description=description)
        add_arguments(sp)
        sp.set_defaults(func=func)
    return p, names


def add_train_arguments(t) -> list[str]:
    """`train`'s own options, then one per config field; returns the fields' names."""
    from .config import CONFIG_DIR

    shipped = ", ".join(sorted(c.stem for c in CONFIG_DIR.glob("*.yaml")))
    t.add_argument("--preset", choices=["demo", "lite", "full"], default=None,
                   help="Start from a preset: demo (embedded model and data, CPU; the default), "
                   "lite or full (the reference recipe).")
    t.add_argument("--config", metavar="YAML", help=f"YAML file of config values, or the name of a shipped one ({shipped}).")
    t.add_argument("--dry-run", action="store_true",
                   help="Print the resolved config and the plan, load nothing, write nothing.")
    t.add_argument("--resume", nargs="?", const="latest", metavar="CHECKPOINT",
                   help="Continue the run in --output-dir from its newest complete checkpoint, or from "
                   "CHECKPOINT, with its saved config.yaml: the command that started it plus --resume works, "
                   "a setting that differs is refused. A finished run is left as it is.")
    t.add_argument("--overwrite", action="store_true",
                   help="Replace whatever --output-dir holds (a finished or interrupted run); without it such "
                   "a directory is refused, so two runs are never mixed.")
    return _field_options(t)


def add_push_arguments(pu) -> None:
    pu.description = ("Push a finished run's adapter (or, for finetune full, its model) to the Hugging Face Hub, "
                      "private unless --public: the adapter, tokenizer, model card and the resolved config without "
                      "local paths (and a --neighbours run's neighbours.json: the texts and prices of the training "
                      "items it looks up), nothing else; a folder `pricetune export` wrote goes as it is. Needs a "
                      "token with write access (HF_TOKEN, or `hf auth login`).")
    pu.add_argument("run_dir", help="The run directory (holds config.yaml and the adapter, or the whole model for "
                    "finetune full), or a folder `pricetune export` wrote (to HF_USER/<run name>-merged or -gguf).")
    pu.add_argument("--repo-id", help="Target repo USER/NAME (default: HF_USER/<run name>, as in the reference).")
    pu.add_argument("--public", action="store_true", help="Create the repo as public (default: private).")


def subcommands() -> list[tuple]:
    """(name, help, description, add_arguments, handler) of every command but train, in --help's order."""
    from .bench.cli import add_bench_arguments
    from .ensemble import add_ensemble_arguments
    from .ensemble.cli import add_select_arguments
    from .evaluation import add_evaluate_arguments
    from .evaluation.calibrate import add_calibrate_arguments
    from .export import add_export_arguments
    from .options import add_predict_arguments
    from .prepare import add_prepare_arguments
    from .serving.cli import add_serve_arguments

    return [
        ("push", "push a finished run, or a folder `export` wrote, to the Hub (private by default)", None, add_push_arguments, cmd_push),
        ("evaluate", "price a test split and report error metrics, charts and an HTML page", None,
         add_evaluate_arguments, lazy(".evaluation:evaluate_cli")),
        ("prepare", "turn a raw product catalog into a training set (with a data card)", None,
         add_prepare_arguments, lazy(".prepare:prepare_cli")),
        ("ensemble", "combine runs and baselines with weights fit on the val split", None,
         add_ensemble_arguments, lazy(".ensemble:ensemble_cli")),
        ("select", "choose on val, by a fixed rule, among members alone and combined", None,
         add_select_arguments, lazy(".ensemble.cli:select_cli")),
        ("calibrate", "price ranges: calibrate a run or ensemble on the val split", None,
         add_calibrate_arguments, lazy(".evaluation.calibrate:calibrate_cli")),
        ("predict", "price one description, or a file of items (jsonl, json, csv, tsv, parquet, xlsx)", None, add_predict_arguments,
         lazy(".inference:predict_cli")),
        ("export", "ship a run: a merged transformers folder, or GGUF for llama.cpp / Ollama",
         "Merge a run's LoRA adapter into its (unquantized) base and save a standalone transformers folder, or "
         "convert it to GGUF with llama.cpp's converter (plus an Ollama Modelfile). The result is reloaded and its "
         "prices checked against the merge.", add_export_arguments, lazy(".export:export_cli")),
        ("serve", "the price API and its web page (FastAPI), batching concurrent requests",
         "Serve prices over HTTP: a web page at /, POST /price with {\"description\": ...} or {\"descriptions\": "
         "[...]}, POST /price/file, GET /health, GET /metrics, API docs at /docs. Concurrent requests share "
         "batches; a full queue answers 503.", add_serve_arguments, lazy(".serving.cli:serve_cli")),
        ("bench", "benchmark pricetune against the reference recipe, side by side", None, add_bench_arguments,
         lazy(".bench.cli:bench_cli")),
    ]


# The commands that share their work out under torchrun / accelerate launch (docs/SCALING.md)
SHARED_OUT = ("train", "evaluate", "predict", "calibrate")


def main(argv: list[str] | None = None) -> int:
    quiet_third_party()
    parser, names = build_parser()
    ns, extra = parser.parse_known_args(argv)
    if extra:  # `serve RUN`, as `evaluate RUN` is written: say how this command takes a run
        from .config import is_run_dir

        hint = next((f" (a run directory goes after --run: --run {x})" for x in extra
                     if hasattr(ns, "run") and is_run_dir(x)), "")
        parser.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    if dist.launched() and ns.command not in SHARED_OUT:  # one process does it; N would race on its files
        if not dist.is_main():
            return 0
        print(f"note: {ns.command} runs in one process: rank 0 does it, the other {dist.world_size() - 1} "
              "process(es) stop here", file=sys.stderr)
    try:
        return ns.func(ns, names)
    except PricetuneError as e:
        where = f" (rank {dist.rank()})" if dist.launched() else ""
        print(f"error{where}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        dist.leave()


if __name__ == "__main__":
    sys.exit(main())
