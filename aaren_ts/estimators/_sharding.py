"""One rank's part of every batch in data-parallel training, and its share of the loss.

Every rank holds all the training data and draws the same batches from the same seeded
generator; ``Shard`` picks this rank's rows of each batch and weights its loss so that
``DistributedDataParallel``'s gradient average equals the gradient of the whole batch's
loss in one process. Pure torch: the process group is set up by ``_distributed``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn


class _LossStep(nn.Module):
    """Runs a whole loss computation as its ``forward``.

    ``DistributedDataParallel`` synchronises the gradients of what runs inside its
    ``forward``; the forecast network is also read through other methods (its window and
    known-future terms), so the loss function itself is what goes through the wrapper (as
    Lightning routes ``forward`` to ``training_step``).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, compute: Callable[[nn.Module], torch.Tensor]) -> torch.Tensor:
        return compute(self.net)


class Shard:
    """Rank ``rank`` of ``world_size`` in an initialised ``torch.distributed`` group.

    Parameters
    ----------
    rank, world_size : int
    device : torch.device
        This rank's device (collectives of the NCCL backend need CUDA tensors).

    Examples
    --------
    A batch of 5 rows over 2 ranks: rank 0 takes 3, rank 1 takes 2; over 8 ranks, rank 6
    has none, and runs row 0 with weight 0 (every rank must take part in each step).

    >>> Shard(0, 2, torch.device("cpu")).rows(5)
    (slice(0, 3, None), 1.0)
    >>> Shard(1, 2, torch.device("cpu")).rows(5)
    (slice(3, 5, None), 1.0)
    >>> Shard(6, 8, torch.device("cpu")).rows(5)
    (slice(0, 1, None), 0.0)
    """

    def __init__(self, rank: int, world_size: int, device: torch.device) -> None:
        self.rank, self.world_size, self.device = rank, world_size, device

    def rows(self, n: int) -> tuple[slice, float]:
        """This rank's contiguous rows of a batch of ``n`` and their weight (1, or 0 for a
        stand-in row when the batch has fewer rows than ranks)."""
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        stop = start + base + (self.rank < extra)
        if start == stop:
            return slice(0, 1), 0.0
        return slice(start, stop), 1.0

    def loss(
        self,
        forecast: torch.Tensor,
        target: torch.Tensor,
        rows: slice,
        weight: float,
        quantiles: torch.Tensor,
    ) -> torch.Tensor:
        """This rank's share of the batch's pinball loss.

        ``forecast`` ``(n_rows, ..., Q)`` covers this rank's ``rows``; ``target``
        ``(batch, ...)`` (NaN: unobserved) the whole batch. The batch loss is the sum over
        its observed targets divided by their count (as ``pinball_loss``); every rank knows
        the count from the whole batch's targets, and its share is scaled by the world
        size because ``DistributedDataParallel`` averages the ranks' gradients. Shards of
        unequal size or with fewer observed targets are then weighted correctly.
        """
        count = (~torch.isnan(target)).sum().clamp(min=1)
        part = target[rows]
        observed = ~torch.isnan(part)
        error = torch.nan_to_num(part).unsqueeze(-1) - forecast
        loss = torch.maximum(quantiles * error, (quantiles - 1) * error)
        total = (loss * observed.unsqueeze(-1)).sum()
        return total * (weight * self.world_size) / (count * quantiles.numel())

    def share(self, part: torch.Tensor, total: torch.Tensor, weight: float) -> torch.Tensor:
        """This rank's share of a batch loss that is a weighted mean over its rows: ``part``
        (the sum of this rank's rows' weighted losses) over ``total`` (the whole batch's
        summed weight), times the world size, which DDP's average divides out again.
        ``weight`` is ``rows``' (0 for a stand-in row).

        >>> shards = [Shard(r, 2, torch.device("cpu")) for r in range(2)]
        >>> losses = torch.tensor([1.0, 2.0, 6.0])  # batch mean 3
        >>> [float(s.share(losses[s.rows(3)[0]].sum(), torch.tensor(3.0), 1.0)) for s in shards]
        [2.0, 4.0]
        """
        return part * (weight * self.world_size) / total

    def wrap(self, net: nn.Module) -> nn.parallel.DistributedDataParallel:
        """``net`` inside ``DistributedDataParallel``: call it with a loss function."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        # every loss reaches every parameter of the forecast network (all its backbones and
        # modes), so DDP need not search the graph for unused ones
        return nn.parallel.DistributedDataParallel(_LossStep(net), device_ids=ids)

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks."""
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor) / self.world_size

    def from_rank_zero(self, value: float) -> float:
        """Rank 0's ``value``, on every rank."""
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(tensor, src=0)
        return float(tensor)
