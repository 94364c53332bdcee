"""GGUF for llama.cpp, Ollama and LM Studio, made by llama.cpp's own converter.

    pricetune export runs/amazon --format gguf --quant q8_0 --out gguf/
    pricetune export runs/amazon --format gguf --quant f16 --out gguf/ --llama-cpp ~/src/llama.cpp
    ollama create price -f gguf/Modelfile && ollama run price "$(cat prompt.txt)"

Steps: merge the adapter into the full-precision base (`merge.export_run`, into a staging folder
inside --out), convert with `convert_hf_to_gguf.py` from llama.cpp (a checkout given with
--llama-cpp, or the copy vendored in the llama-cpp-python source distribution on PyPI, which is
downloaded into the staging folder when no --llama-cpp is given; `--llama-cpp` also takes that
.tar.gz), quantize with `llama-quantize` for q4_k_m (f16 and q8_0 come from the converter itself),
then load the GGUF back (transformers' `gguf_file=`, and llama.cpp through llama-cpp-python when it
is installed) and compare its greedy prices on val prompts with the merged model's. A Modelfile
for Ollama is written beside the GGUF. Regress runs have no GGUF form: their head is not a language
model's, and llama.cpp would drop it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from ..bases import KNOWN
from ..config import EXPORT_INFO
from ..errors import PricetuneError

LLAMA_CPP_PYTHON = "0.3.36"  # the llama-cpp-python source distribution whose vendored converter is tested
QUANTS = ("f16", "q8_0", "q4_k_m")
NEEDED = ("convert_hf_to_gguf.py", "conversion", "gguf-py")


def _extract(sdist: Path, into: Path) -> Path:
    """The converter, its `conversion` package and its `gguf-py` out of a llama-cpp-python sdist."""
    into.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers()
                       if "/vendor/llama.cpp/" in m.name
                       and m.name.split("/vendor/llama.cpp/", 1)[1].split("/")[0] in NEEDED]
            if not members:
                raise PricetuneError(f"{sdist} holds no vendor/llama.cpp/convert_hf_to_gguf.py")
            tar.extractall(into, members=members, filter="data")
    except tarfile.TarError as e:
        raise PricetuneError(f"{sdist} is not a readable llama-cpp-python source distribution ({e})") from None
    return next(into.rglob("vendor/llama.cpp"))


def find_converter(llama_cpp: str | None, staging: Path, log=print) -> Path:
    """The folder holding convert_hf_to_gguf.py: from --llama-cpp (a checkout or an sdist), else
    the llama-cpp-python sdist fetched from PyPI into the staging folder."""
    if llama_cpp:
        path = Path(llama_cpp).expanduser()
        if path.is_dir():
            for cand in (path, path / "vendor" / "llama.cpp"):
                if (cand / "convert_hf_to_gguf.py").is_file():
                    return cand
            raise PricetuneError(f"{path} has no convert_hf_to_gguf.py (give a llama.cpp checkout or the "
                                 f"llama-cpp-python source distribution)")
        if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
            return _extract(path, staging / "llama.cpp")
        raise PricetuneError(f"--llama-cpp {path}: not a folder or a .tar.gz")
    log(f"fetching llama.cpp's converter: the llama-cpp-python {LLAMA_CPP_PYTHON} source distribution from PyPI "
        "(about 77 MB; pass --llama-cpp to reuse a copy)")
    download = staging / "sdist"
    p = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", str(download), "-q"],
                       capture_output=True, text=True)
    sdists = sorted(download.glob("llama_cpp_python-*.tar.gz"))
    if p.returncode != 0 or not sdists:
        raise PricetuneError(
            "could not download the llama-cpp-python source distribution, which carries llama.cpp's GGUF "
            f"converter ({(p.stderr or p.stdout).strip().splitlines()[-1:] or ['no output']}). Offline, pass "
            "--llama-cpp with a llama.cpp checkout or a downloaded llama_cpp_python-*.tar.gz")
    return _extract(sdists[0], staging / "llama.cpp")


def convert(converter_dir: Path, merged: Path, outfile: Path, outtype: str) -> None:
    p = subprocess.run([sys.executable, str(converter_dir / "convert_hf_to_gguf.py"), str(merged),
                        "--outfile", str(outfile), "--outtype", outtype], capture_output=True, text=True)
    if p.returncode != 0 or not outfile.is_file():
        tail = "\n    ".join((p.stderr or p.stdout).strip().splitlines()[-6:])
        hint = ""
        if "No module named" in tail:
            module = tail.split("No module named", 1)[1].split()[0].strip("'\"")
            hint = f"\n  The converter needs {module}: pip install {module} (or pip install 'pricetune[gguf]')"
        raise PricetuneError(f"llama.cpp's converter failed:\n    {tail}{hint}")


def quantize(f16: Path, out: Path, quant: str) -> None:
    binary = shutil.which("llama-quantize")
    p = subprocess.run([binary, str(f16), str(out), quant.upper()], capture_output=True, text=True)
    if p.returncode != 0:
        raise PricetuneError("llama-quantize failed: " + (p.stderr or p.stdout).strip()[-400:])


def greedy_prices(model, tokenizer, prompts: list[str], max_length: int) -> list[float | None]:
    from ..inference import generate_prices

    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return [p for _, p in generate_prices(model, tokenizer, prompts, max_length, batch_size=8)]


def llama_cpp_prices(path: Path, prompts: list[str]) -> list[float | None] | None:
    """Greedy prices from llama.cpp itself, when llama-cpp-python is installed (else None)."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        return None
    try:
        from llama_cpp import Llama
    except ImportError as e:  # installed, but not importable: say so rather than "not installed"
        raise PricetuneError(f"llama-cpp-python is installed but does not import ({e}); "
                             f"pip install {e.name or 'its missing dependency'}") from None
    from ..data import make_prompt
    from ..metrics import parse_price

    llm = Llama(model_path=str(path), n_ctx=512, verbose=False)
    out = []
    for prompt in prompts:
        text = llm.create_completion(make_prompt(prompt), max_tokens=8, temperature=0.0)["choices"][0]["text"]
        out.append(parse_price(text))
    return out


def modelfile(gguf_name: str, eos: str) -> str:
    return f'''# Ollama: ollama create price -f Modelfile; then ollama run price "<the whole prompt>"
# The model was trained on raw prompts (no chat template): the TEMPLATE passes the prompt through
# unchanged. A prompt must follow the training template, ending in "Price is $":
#   What does this cost to the nearest dollar?\\n\\nTitle: ...\\nCategory: ...\\n\\nPrice is $
FROM ./{gguf_name}
TEMPLATE """{{{{ .Prompt }}}}"""
PARAMETER stop "{eos}"
PARAMETER stop "\\n"
PARAMETER num_predict 8
PARAMETER temperature 0
'''


def export_gguf(run_dir: str, out_dir: str, quant: str = "q8_0", llama_cpp: str | None = None, check: int = 16,
                log=print) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..config import load_run_config
    from ..inference.load import run_paths
    from ..options import refuse_filled_folder
    from .card import write_export_card
    from .merge import check_prompts, export_run, export_run_name, finished_weights, price_agreement

    run, out = Path(run_dir), Path(out_dir)
    if quant not in QUANTS:
        raise PricetuneError(f"--quant must be one of {', '.join(QUANTS)}")
    cfg = load_run_config(str(run_paths(run_dir)[0]))
    if cfg.objective == "regress":
        raise PricetuneError(
            "a regress run has no GGUF form: llama.cpp runs language models, and this run prices with a head on "
            "the hidden states. Deploy it as a sequence-classification folder instead: `pricetune export RUN --out "
            "merged/` (the default --format transformers), then serve that with `pricetune serve --run RUN`, plain "
            "transformers (AutoModelForSequenceClassification), or a server for classification models such as "
            "vLLM's pooling runner; docs/DEPLOY.md, 'Regress runs', has the steps. A generate run "
            "(--objective generate) exports to GGUF.")
    base = KNOWN.get(cfg.base_model)
    if base is not None and base.no_gguf_export:
        raise PricetuneError(
            f"a {base.name} run does not convert to GGUF: {base.no_gguf_export}. Export the merged folder instead "
            f"(`pricetune export {run} --out merged/`) and serve it, or the run (`pricetune serve --run {run}`)")
    finished_weights(run_dir)
    run_name = export_run_name(cfg, run_dir)
    refuse_filled_folder(out)
    if quant == "q4_k_m" and shutil.which("llama-quantize") is None:
        raise PricetuneError("q4_k_m needs llama.cpp's llama-quantize on PATH (build llama.cpp, or install its "
                             "release binaries); f16 and q8_0 need nothing more")
    out.mkdir(parents=True, exist_ok=True)
    staging = out / ".staging"
    try:
        merged = export_run(str(run), str(staging / "merged"), "fp32", check=0, log=log)
        converter = find_converter(llama_cpp, staging, log)
        name = f"{run_name}-{quant}.gguf"
        first = staging / f"{run_name}-f16.gguf" if quant == "q4_k_m" else out / name
        log(f"converting with {converter / 'convert_hf_to_gguf.py'} ({'f16' if quant == 'q4_k_m' else quant})")
        convert(converter, merged, first, "f16" if quant == "q4_k_m" else quant)
        if quant == "q4_k_m":
            quantize(first, out / name, quant)

        # loaded back and priced as the merged model is
        prompts = check_prompts(cfg, check)
        tok = AutoTokenizer.from_pretrained(merged)
        reference = greedy_prices(AutoModelForCausalLM.from_pretrained(merged).eval(), tok, prompts, cfg.max_length)
        back = AutoModelForCausalLM.from_pretrained(out, gguf_file=name).eval()
        back_tok = AutoTokenizer.from_pretrained(out, gguf_file=name)
        info = {"run": str(run), "run_name": run_name, "base_model": cfg.base_model, "objective": cfg.objective, "format": "gguf",
                "max_length": cfg.max_length, "dataset": cfg.dataset, "quant": quant, "file": name,
                "converter": f"llama.cpp convert_hf_to_gguf.py ({llama_cpp or f'llama-cpp-python {LLAMA_CPP_PYTHON} sdist'})",
                "check_transformers": price_agreement(reference, greedy_prices(back, back_tok, prompts, cfg.max_length))}
        via_llama_cpp = llama_cpp_prices(out / name, prompts)
        info["check_llama_cpp"] = price_agreement(reference, via_llama_cpp) if via_llama_cpp is not None else \
            "llama-cpp-python is not installed; not checked in llama.cpp itself"
        eos = tok.eos_token or "</s>"
        (out / "Modelfile").write_text(modelfile(name, eos), encoding="utf-8")
        info["ollama"] = f"cd {out} && ollama create {run_name.lower()} -f Modelfile"
        shutil.rmtree(staging)
        write_export_card(out, info, cfg)
        (out / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # it was new or empty: nothing half-made is left
        raise
    c = info["check_transformers"]
    log(f"GGUF loaded back: {c['same_price']} of {c['items']} greedy prices equal the merged model's "
        f"(largest difference ${c['max_abs_difference']:,.2f})")
    log(f"Ollama: {info['ollama']}")
    return out / name
