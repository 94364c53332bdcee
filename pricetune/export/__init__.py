"""`pricetune export`: ship a run as a standalone model.

    pricetune export RUN --out merged/                              # transformers folder (merge.py)
    pricetune export RUN --format gguf --quant q8_0 --out gguf/     # llama.cpp / Ollama (to_gguf.py)

`--format transformers` (the default) folds the adapter into the full-precision base and saves a
plain transformers folder (a sequence-classification folder for regress runs); `--format gguf`
converts that merge with llama.cpp's own converter and writes an Ollama Modelfile. Both reload what
they wrote and record in `pricetune_export.json` how its prices agree with the float32 merge.
docs/DEPLOY.md has the commands for llama.cpp, Ollama and vLLM.
"""

from __future__ import annotations

__all__ = ["add_export_arguments", "export_cli"]  # the work itself: merge.export_run, to_gguf.export_gguf


def add_export_arguments(p) -> None:
    from ..options import PRECISIONS, SIZE
    from .to_gguf import QUANTS  # torch-free, as this whole function: `export --help` loads no model code

    p.add_argument("run_dir", help="The run directory (holds config.yaml and the adapter, or the whole model for "
                   "finetune full), or one of its checkpoints (RUN/checkpoint-N: the model at that step).")
    p.add_argument("--out", required=True, help="New folder for the export (must not exist, or be empty).")
    p.add_argument("--format", default="transformers", choices=["transformers", "gguf"],
                   help="transformers: a merged model folder (default); gguf: one .gguf file and an Ollama Modelfile.")
    p.add_argument("--dtype", default="bf16", choices=list(PRECISIONS),
                   help="transformers: weights' type in the saved model (default bf16; the merge runs in float32).")
    p.add_argument("--quant", default="q8_0", choices=list(QUANTS),
                   help="gguf: f16, q8_0 (default; both from the converter) or q4_k_m (needs llama.cpp's llama-quantize).")
    p.add_argument("--llama-cpp", metavar="DIR_OR_SDIST",
                   help="gguf: a llama.cpp checkout, or a llama_cpp_python-*.tar.gz, holding convert_hf_to_gguf.py "
                   "(default: that sdist, downloaded from PyPI into the output's staging folder).")
    p.add_argument("--check", type=SIZE, default=16,
                   help="Reload the export and compare its prices with the float32 merge's on this many val "
                   "prompts (default 16); recorded in pricetune_export.json.")


def refuse_neighbour_runs(run_dir: str) -> None:
    """An exported model is the network alone: a run that reads its look-alikes' prices in each prompt
    (neighbours) would price without them, worse than it was measured, so it is not exported."""
    from ..config import load_run_config
    from ..errors import PricetuneError
    from ..inference.load import run_paths

    home, _ = run_paths(run_dir)
    if (home / "config.yaml").is_file() and load_run_config(home).neighbours:
        raise PricetuneError(
            f"{run_dir} was trained with similar items' prices in its prompts (neighbours); an exported model "
            "cannot look items up, so it would price worse than measured. Serve the run itself (pricetune serve --run "
            "RUN_DIR), or train without --neighbours to export")


def refuse_ensembles(folder: str) -> None:
    """An ensemble is several models and a rule that combines them, not one network to merge or convert."""
    from pathlib import Path

    from ..errors import PricetuneError

    if (Path(folder) / "ensemble.json").is_file():
        raise PricetuneError(f"{folder} is an ensemble: its classical members and the rule that combines them have no "
                             "transformers or GGUF form. Serve it (pricetune serve --ensemble DIR) or price with it "
                             "(pricetune predict --ensemble DIR, Pricer.from_ensemble); a run among its members "
                             "exports alone (pricetune export RUN)")


def export_cli(ns) -> int:
    refuse_ensembles(ns.run_dir)
    refuse_neighbour_runs(ns.run_dir)
    if ns.format == "gguf":
        from .to_gguf import export_gguf

        out = export_gguf(ns.run_dir, ns.out, ns.quant, ns.llama_cpp, ns.check)
    else:
        from .merge import export_run

        out = export_run(ns.run_dir, ns.out, ns.dtype, ns.check)
    print(f"exported: {out}")
    return 0
