"""Fine-tuning: the reference recipe's steps 0-7 as one function that reads top to bottom.

    pricetune train                                   # demo preset: embedded SmolLM2 + diamonds, CPU
    pricetune train --preset lite --dry-run           # the reference lite recipe, resolved, no weights
    pricetune train --preset lite --base-model smollm2-135m \
        --dataset amazon-18k --max-steps 3

    from pricetune.config import resolve_config
    from pricetune.training import train
    summary = train(resolve_config("demo", overrides={"max_steps": 10}))

One file per part: `run.py` the entry point (`train`, `prepare_trainer`, `plan`); `generate.py` the
generate objective's trainer (TRL's SFTTrainer, with the completion-only fast loss); `regress.py` the
regress objective's (transformers' Trainer, a scalar head on log price); `common.py` what both share
(atomic checkpoints, a resumable batch order, the training arguments); `callbacks.py` and `card.py`
what a run writes beside its weights.

The fast path (`fast: true`, the default) is TRL's SFTTrainer with the fast loss of `generate.py`
and `pricetune.fastpath.speed_up`, which swaps in attention, LoRA dropout, RMSNorm and SwiGLU that
cost less time or keep less for backward. Same loss, same gradients; each change measured in
docs/PERFORMANCE.md.
"""

from .callbacks import GracefulStop, MetricsLogger, OpeningLoss
from .card import write_model_card
from .common import AtomicCheckpoints, CheckpointError, find_checkpoint, resolve_optim
from .generate import (
    PricetuneTrainer,
    build_sft_config,
    completion_loss,
    is_right_padded,
)
from .regress import RegressionTrainer, build_regress_args
from .run import Interrupted, oom_advice, plan, prepare_run_dir, prepare_trainer, train

__all__ = [
    "AtomicCheckpoints", "CheckpointError", "GracefulStop", "Interrupted", "MetricsLogger", "OpeningLoss",
    "PricetuneTrainer", "RegressionTrainer", "build_regress_args", "build_sft_config", "completion_loss",
    "find_checkpoint", "is_right_padded", "oom_advice", "plan", "prepare_run_dir", "prepare_trainer",
    "resolve_optim", "train", "write_model_card",
]
