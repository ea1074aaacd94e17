"""What every hand-written training loop shares: an ``accelerate.Accelerator`` and batches planned per epoch.

Why accelerate: mixed precision (autocast and, under fp16, the gradient scaler), gradient clipping
that unscales first, device placement and, later, several processes (DDP) are its job, the same way
the HF Trainer gets them for text. A loop here prepares its trainable modules, optimizer, data loader
and scheduler with the accelerator, calls ``accelerator.backward`` and ``accelerator.clip_grad_norm_``,
and keeps rank-0-only work (metrics, samples, checkpoints, the adapter) behind
``accelerator.is_main_process``.

Why planned batches: a loop's data order is a pure function of (seed, epoch), so a resumed run sees
exactly the batches it would have seen; :class:`PlannedBatches` is a batch sampler over such a plan,
and :func:`micro_batches` skips what a resumed run already consumed without building those batches.

    accelerator = loop.make_accelerator(device, mixed_precision="bf16")
    batches = loop.PlannedBatches(lambda epoch: plan(seed, epoch), batch_size)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loop.data_loader(data, batches, collate))
    for epoch, batch in loop.micro_batches(loader, batches, skip=start_step * grad_accum): ...

Importing this module imports no ML library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["make_accelerator", "mixed_precision_of", "PlannedBatches", "data_loader", "micro_batches",
           "to_device", "mean_everywhere", "without_ddp", "sync_gradients", "stop_everywhere"]


def make_accelerator(device: str, mixed_precision: str = "no") -> Any:
    """An ``Accelerator`` for one training run on ``device`` (``cpu`` forces the CPU).

    :param mixed_precision: ``no`` / ``fp16`` / ``bf16`` (fp16 adds accelerate's gradient scaler).

    The process-wide mixed-precision state of an earlier run in the same process (tests, benchmarks)
    is reset first; the distributed state (which process, which device) is kept.

    Several ranks (a multi-device job): the loop plans *global* batches and each rank trains its share
    (:func:`lora_factory.kit.dist.batch_share`), so accelerate is told batches are split
    (``split_batches``: a prepared scheduler steps once per optimizer step, not once per rank), and the
    process group's collectives are bounded (``kit.dist.collective_timeout_s``).
    """
    from datetime import timedelta

    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import DataLoaderConfiguration, InitProcessGroupKwargs

    from lora_factory.kit.dist import collective_timeout_s

    AcceleratorState._reset_state()
    GradientState._reset_state()
    return Accelerator(mixed_precision=mixed_precision, cpu=device == "cpu",
                       dataloader_config=DataLoaderConfiguration(split_batches=True),
                       kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=collective_timeout_s()))])


def mixed_precision_of(dtype: Any) -> str:
    """The accelerate name of a torch compute dtype (``no`` for float32 / None)."""
    name = str(dtype or "")
    return "bf16" if name.endswith("bfloat16") else "fp16" if name.endswith("float16") else "no"


class PlannedBatches:
    """A batch sampler whose batches for epoch ``e`` are ``plan(e)`` (lists of dataset indices).

    ``set_epoch`` is called by the loader accelerate prepares; ``skip_next(n)`` drops the first ``n``
    batches of the next pass only (a resume), without the loader building them.
    """

    drop_last = False

    def __init__(self, plan: Callable[[int], Sequence[Sequence[int]]], batch_size: int) -> None:
        self.plan = plan
        self.batch_size = int(batch_size)
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def skip_next(self, count: int) -> None:
        self._skip = max(0, int(count))

    def __iter__(self) -> Iterator[list[int]]:
        skip, self._skip = self._skip, 0
        for batch in list(self.plan(self.epoch))[skip:]:
            yield list(batch)

    def __len__(self) -> int:
        return len(self.plan(self.epoch))


def data_loader(data: Any, batches: PlannedBatches, collate: Callable[[list[Any]], Any] | None = None) -> Any:
    """A torch ``DataLoader`` over ``data`` in ``batches``' order (main process, no workers).

    ``collate`` receives the list of items of one batch; without it the batch is that list. The loader
    has a generator of its own: each pass draws a seed from it, which from the global generator would
    shift every later random draw of the run (noise, VAE sampling, dropout).
    """
    import torch
    from torch.utils.data import DataLoader

    return DataLoader(data, batch_sampler=batches, collate_fn=collate or list, num_workers=0,
                      generator=torch.Generator().manual_seed(0))


def micro_batches(loader: Any, batches: PlannedBatches, skip: int = 0) -> Iterator[tuple[int, Any]]:
    """``(epoch, batch)`` forever from ``loader``, after skipping the first ``skip`` micro-batches.

    Whole epochs are skipped by counting their planned batches, the rest inside the epoch by the sampler.
    """
    epoch = 0
    while skip > 0:
        size = len(batches.plan(epoch))
        if size == 0:
            raise ValueError("an epoch without batches: no training data")
        if skip < size:
            break
        skip -= size
        epoch += 1
    while True:
        loader.set_epoch(epoch) if hasattr(loader, "set_epoch") else batches.set_epoch(epoch)
        batches.skip_next(skip)
        skip = 0
        empty = True
        for batch in loader:
            empty = False
            yield epoch, batch
        if empty:
            raise ValueError("an epoch without batches: no training data")
        epoch += 1


def to_device(batch: Any, device: Any) -> Any:
    """A collated batch (tensors in dicts / lists) onto ``device`` (what a prepared loader would do)."""
    from accelerate.utils import send_to_device

    return send_to_device(batch, device)


def mean_everywhere(accelerator: Any, value: float) -> float:
    """The mean of ``value`` over the ranks (itself with one process): a rank's weighted loss -> the global loss."""
    if accelerator.num_processes == 1:
        return float(value)
    import torch

    tensor = torch.tensor([float(value)], device=accelerator.device)
    return float(accelerator.reduce(tensor, reduction="mean").item())


def without_ddp(accelerator: Any, module: Any) -> Any:
    """A prepared module without accelerate's DDP wrapper (its mixed-precision forward kept).

    A hand-written loop reads its modules' attributes (``dtype``, ``config``), samples with them and
    saves them; a DDP wrapper hides all of that. The loop syncs the (few) LoRA gradients itself, once
    per optimizer step, with :func:`sync_gradients`, which gradient accumulation also prefers.
    """
    if accelerator.num_processes == 1:
        return module
    return accelerator.unwrap_model(module, keep_fp32_wrapper=True)


def sync_gradients(accelerator: Any, params: Sequence[Any]) -> None:
    """Average the gradients of ``params`` over the ranks (nothing with one process), in one collective.

    Call it after the last backward of an optimizer step and before clipping: every rank then clips and
    steps the same gradient, the one of the global batch.
    """
    if accelerator.num_processes == 1:
        return
    import torch
    import torch.distributed as tdist

    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.detach().reshape(-1).float() for p in params])
    tdist.all_reduce(flat, op=tdist.ReduceOp.SUM)
    flat /= accelerator.num_processes
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad).to(p.grad.dtype))
        offset += n


def stop_everywhere(accelerator: Any, stop: bool) -> bool:
    """True on every process once one of them must stop (a cancel seen by the main process)."""
    if accelerator.num_processes == 1:
        return bool(stop)
    import torch

    flag = torch.tensor([1.0 if stop else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item() > 0)
