"""One job across several processes (ranks): who writes, how ranks agree, how a batch is shared.

A multi-device job runs the same ``train`` hook in N processes (the host's launcher, or Ray Train on a
cluster, sets ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` / ``MASTER_PORT`` and initialises
``torch.distributed`` before the hook runs). A plugin needs very little of it:

* :func:`is_main_process`: only rank 0 writes metrics, samples, checkpoints and the adapter (``ctx``
  on the other ranks already drops progress and samples, but files a plugin writes itself are its job);
* :func:`any_rank` / :func:`barrier` / :func:`gather_objects`: ranks agree on a stop, wait for the
  writer, or pool a cache each of them built a share of;
* :func:`batch_share`: a loop that plans *global* batches (per device × devices, the same plan on every
  rank) takes this rank's rows and the weight that makes the DDP-averaged gradient the one of the
  whole batch, so N ranks train exactly what one process with the N-fold batch would.

Everything answers sensibly with one process (``world_size() == 1``), and importing this module
imports no ML library.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

__all__ = ["rank", "local_rank", "world_size", "is_distributed", "is_main_process", "barrier", "any_rank",
           "gather_objects", "main_first", "batch_share", "share_weight", "collective_timeout_s"]

T = TypeVar("T")

DEFAULT_COLLECTIVE_TIMEOUT_S = 300.0


def _initialized() -> bool:
    if "torch" not in sys.modules:
        return False
    import torch.distributed as tdist

    return tdist.is_available() and tdist.is_initialized()


def rank() -> int:
    """This process's global rank (0 without a launcher)."""
    if _initialized():
        import torch.distributed as tdist

        return int(tdist.get_rank())
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def world_size() -> int:
    """How many ranks train this job (1 without a launcher)."""
    if _initialized():
        import torch.distributed as tdist

        return int(tdist.get_world_size())
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_distributed() -> bool:
    return world_size() > 1


def is_main_process() -> bool:
    """True on the rank that writes (rank 0), and always in a single-process job."""
    return rank() == 0


def collective_timeout_s() -> float:
    """How long a collective may wait for a peer before it fails (``LORA_FACTORY_COLLECTIVE_TIMEOUT``, s).

    A rank that died is noticed by the launcher first; this bounds the wait when a peer hangs instead.
    """
    try:
        return max(10.0, float(os.environ.get("LORA_FACTORY_COLLECTIVE_TIMEOUT", DEFAULT_COLLECTIVE_TIMEOUT_S)))
    except ValueError:
        return DEFAULT_COLLECTIVE_TIMEOUT_S


def barrier() -> None:
    """Every rank waits here until all arrived (nothing with one process)."""
    if _initialized() and world_size() > 1:
        import torch.distributed as tdist

        tdist.barrier()


def any_rank(flag: bool) -> bool:
    """True on every rank once ``flag`` is true on one of them (a cancel seen by rank 0, an error)."""
    if not (_initialized() and world_size() > 1):
        return bool(flag)
    import torch
    import torch.distributed as tdist

    device = "cuda" if tdist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    tdist.all_reduce(value, op=tdist.ReduceOp.MAX)
    return bool(value.item() > 0)


def gather_objects(obj: T) -> list[T]:
    """``obj`` of every rank, in rank order, on every rank (``[obj]`` with one process)."""
    if not (_initialized() and world_size() > 1):
        return [obj]
    import torch.distributed as tdist

    out: list[Any] = [None] * world_size()
    tdist.all_gather_object(out, obj)
    return out


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (fills a cache), the others after it (read the cache)."""
    if is_main_process():
        yield
        barrier()
    else:
        barrier()
        yield


def share_bounds(size: int, this_rank: int | None = None, world: int | None = None) -> tuple[int, int]:
    """``[start, stop)`` of this rank's contiguous rows of a global batch of ``size`` rows."""
    r = rank() if this_rank is None else this_rank
    n = world_size() if world is None else world
    base, extra = divmod(size, n)
    start = r * base + min(r, extra)
    return start, start + base + (1 if r < extra else 0)


def batch_share(batch: Sequence[T], this_rank: int | None = None, world: int | None = None) -> tuple[list[T], slice, bool]:
    """This rank's rows of a global batch: ``(items, rows, empty)``.

    Rows are contiguous (rank 0 the first ones), so randomness drawn for the global batch on every rank
    (noise, timesteps) is sliced with ``rows`` into the same numbers one process would use. A rank whose
    share is empty (a batch smaller than the world) gets the batch's first item with ``empty=True``: it
    must still run forward and backward (DDP waits for its gradients), with weight 0.
    """
    start, stop = share_bounds(len(batch), this_rank, world)
    if stop > start:
        return list(batch[start:stop]), slice(start, stop), False
    return list(batch[:1]), slice(0, 1), True


def share_weight(local_count: float, global_count: float, world: int | None = None) -> float:
    """The factor on a rank's *mean* loss that turns DDP's gradient average into the global batch's mean.

    DDP averages the ranks' gradients; a rank whose mean loss covers ``local_count`` of the batch's
    ``global_count`` items (rows, or loss tokens) must weigh ``local_count * world / global_count``.
    """
    n = world_size() if world is None else world
    if global_count <= 0:
        return 0.0
    return float(local_count) * n / float(global_count)
