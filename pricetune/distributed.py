"""One run across many processes: what pricetune does differently under a launcher.

    torchrun --nproc-per-node 2 -m pricetune train --base-model smollm2-135m \
        --dataset amazon-18k --max-steps 20
    accelerate launch --config_file configs/accelerate/ddp.yaml -m pricetune train --preset lite
    torchrun --nproc-per-node 2 -m pricetune evaluate runs/NAME --limit 200

torchrun and `accelerate launch` start one process per device and tell each its place through the
environment (WORLD_SIZE, RANK, LOCAL_RANK). Data parallelism itself is transformers' Trainer
(through accelerate: DDP with gloo on CPU, nccl on CUDA). What this module adds is agreement:
every process uses rank 0's run name, rank 0 alone writes, an error on rank 0 stops every rank
instead of leaving them waiting, and a stop signal stops all of them at the same step. Without a
launcher every function here is the single-process identity.

Batch semantics (docs/SCALING.md): `batch_size` x `grad_accum` is the global batch, what one optimizer
step sees summed over all processes; each process takes batch_size / world_size per micro-batch.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from .errors import PricetuneError


def world_size(env=os.environ) -> int:
    return int(env.get("WORLD_SIZE", "1"))


def repeated_rows(rows: int, per_device_batch: int, processes: int) -> int:
    """Rows an epoch repeats under `processes` processes: accelerate's `even_batches` fills the last
    uneven micro-batch round with rows from the epoch's start, so that every process takes the same
    number of steps (DDP would hang otherwise). 0 for one process or a multiple of the round."""
    if processes <= 1:
        return 0
    round_rows = per_device_batch * processes
    return (-rows) % round_rows


def rank(env=os.environ) -> int:
    return int(env.get("RANK", "0"))


def launched(env=os.environ) -> bool:
    """True under torchrun / accelerate launch with more than one process."""
    return world_size(env) > 1


def is_main() -> bool:
    return rank() == 0


def sharded_weights(env=os.environ) -> str | None:
    """FSDP or DeepSpeed ZeRO-3, as accelerate launch announces them: the weights live in shards."""
    if env.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        return "FSDP"
    if env.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true") and \
            env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "") == "3":
        return "DeepSpeed ZeRO-3"
    return None


def state():
    """accelerate's process state; creating it joins the process group (gloo on CPU, nccl on CUDA).
    On a machine without an accelerator accelerate must be told it is a CPU run, or it runs the
    processes as unrelated single ones (as Trainer's `use_cpu` tells it)."""
    import torch
    from accelerate import PartialState

    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return PartialState(cpu=not (torch.cuda.is_available() or mps))


def agree(value: Any) -> Any:
    """Rank 0's value on every rank (a picklable object)."""
    if not launched():
        return value
    from accelerate.utils import broadcast_object_list

    state()
    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def on_main(fn: Callable[[], Any], share: bool = True) -> Any:
    """fn() on rank 0 only. Its PricetuneError is raised on every rank (the others would otherwise
    wait for rank 0 forever); its result reaches every rank when `share`, else the others get None."""
    if not launched():
        return fn()
    result, error = None, None
    if is_main():
        try:
            result = fn()
        except PricetuneError as e:
            error = (type(e), str(e))
    result_or_none, error = agree((result if share else None, error))
    if error is not None:
        raise error[0](error[1])
    return result if is_main() else result_or_none


def main_first(fn: Callable[[], Any]) -> Any:
    """fn() on rank 0, then on the others once rank 0 is done (they read what rank 0 cached).
    An error on rank 0 is raised on every rank."""
    result = on_main(fn, share=False)
    return result if is_main() else fn()


def total(value: int) -> int:
    """The sum of an integer over all ranks."""
    if not launched():
        return value
    import torch
    from accelerate.utils import reduce

    st = state()
    return int(reduce(torch.tensor([int(value)], device=st.device), reduction="sum").item())


def any_process(flag: bool) -> bool:
    """True on every rank when `flag` is true on at least one."""
    return total(int(flag)) > 0


def split_batch(batch_size: int, grad_accum: int, world: int) -> tuple[int, int]:
    """(per-device batch, accumulation steps) that give the global batch `batch_size * grad_accum`
    on `world` processes: the largest per-device batch that is no larger than `batch_size` (the
    micro-batch the config was sized for), so the fewest accumulation steps."""
    global_batch = batch_size * grad_accum
    if global_batch % world:
        fits = [n for n in range(1, min(global_batch, 64) + 1) if global_batch % n == 0]
        raise PricetuneError(
            f"the global batch {global_batch} (batch_size {batch_size} x grad_accum {grad_accum}) cannot be split "
            f"evenly over {world} processes; use a process count that divides it ({', '.join(map(str, fits))}) "
            "or change --batch-size")
    per_process = global_batch // world
    accum = next(a for a in range(1, per_process + 1) if per_process % a == 0 and per_process // a <= batch_size)
    return per_process // accum, accum


def leave() -> None:
    """Leave the process group before the interpreter exits. A gloo group left to the exit's teardown
    can abort a process whose work is done ("terminate called without an active exception"), and the
    launcher then kills its peers and reports the run failed."""
    if not launched():
        return
    import torch.distributed as td

    if td.is_available() and td.is_initialized():
        td.destroy_process_group()


def map_shared(fn: Callable[[list], list], items: list) -> list:
    """fn over this rank's share of `items` (every world_size-th, from its rank: lengths stay
    balanced), the results gathered back into the items' order on every rank."""
    if not launched():
        return fn(items)
    from accelerate.utils import gather_object

    state()
    n, r = world_size(), rank()
    parts = gather_object([fn(items[r::n])])
    out: list = [None] * len(items)
    for i, part in enumerate(parts):
        out[i::n] = part
    return out
