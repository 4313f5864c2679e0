"""Data-parallel training of one network over several processes (torch DDP).

``fit_data_parallel`` either joins the process group this process was launched in
(``torchrun``, possibly over several nodes) or spawns ``processes`` local ranks (gloo on CPU,
NCCL with one GPU per rank), forked from a forkserver where the platform has one
(``start_method``). Every rank trains the same initial network on its shard of
every global batch (``_sharding.Shard``); the ranks' weights stay identical, and rank 0's
are loaded back into the caller's network. The training loop is a function
``train(net, data, *, generator, on_epoch, shard, **kwargs)``: the forecaster's
``fit_network`` (the default) or the panel estimators' ``train_panel``.
"""

from __future__ import annotations

import copy
import multiprocessing
import numbers
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ._forecast_training import fit_network
from ._sharding import Shard

STRATEGIES = ("auto", "ddp")


def launched() -> bool:
    """Whether this process is a rank of a launched group (``torchrun`` sets WORLD_SIZE)."""
    return dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) > 1


def check_devices(devices: Any, strategy: Any, device: torch.device) -> int:
    """The number of local processes asked for, after checking ``devices`` and ``strategy``.

    ``devices="auto"``: every visible GPU with a CUDA ``device``, else 1.

    Examples
    --------
    >>> check_devices(2, "ddp", torch.device("cpu"))
    2
    >>> check_devices("auto", "auto", torch.device("cpu"))
    1
    >>> check_devices(2, "dp", torch.device("cpu"))
    Traceback (most recent call last):
    ...
    ValueError: strategy must be one of ('auto', 'ddp'), got 'dp'
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    cuda = device.type == "cuda"
    if devices == "auto":
        return max(1, torch.cuda.device_count()) if cuda else 1
    if isinstance(devices, bool) or not isinstance(devices, numbers.Integral) or devices < 1:
        raise ValueError(f"devices must be a positive int or 'auto', got {devices!r}")
    devices = int(devices)  # numpy integers too
    if cuda and devices > torch.cuda.device_count():
        raise ValueError(
            f"devices={devices} CUDA devices were asked for, but {torch.cuda.device_count()} "
            "are visible"
        )
    return devices


def wants_data_parallel(processes: int, strategy: str) -> bool:
    """DDP for several local devices, or with ``strategy="ddp"`` inside a launched group."""
    return processes > 1 or (strategy == "ddp" and launched())


def _moved(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, list | tuple):
        return type(value)(_moved(v, device) for v in value)
    return value


def _data_on(data: Any, device: torch.device) -> Any:
    """A copy of the training data with every tensor on ``device``."""
    moved = copy.copy(data)
    moved.__dict__ = {key: _moved(value, device) for key, value in data.__dict__.items()}
    return moved


def _print_epoch(epoch: int, loss: float, validation: float | None = None) -> None:
    extra = "" if validation is None else f", validation {validation:.4f}"
    print(f"epoch {epoch + 1}: loss {loss:.4f}{extra}", flush=True)


def _train_rank(
    rank: int,
    world_size: int,
    device: torch.device,
    net: torch.nn.Module,
    data: Any,
    generator: torch.Generator,
    verbose: bool,
    train: Callable[..., Any],
    fit_kwargs: dict,
) -> Any:
    """This rank's part of the training (``net`` is trained in place, on ``device``)."""
    net.to(device)
    report = _print_epoch if verbose and rank == 0 else None
    return train(
        net,
        _data_on(data, device),
        generator=generator,
        on_epoch=report,
        shard=Shard(rank, world_size, device),
        **fit_kwargs,
    )


def _spawned_rank(
    rank: int,
    world_size: int,
    store: str,
    cuda: bool,
    threads: int,
    net: torch.nn.Module,
    data: Any,
    generator_state: torch.Tensor,
    verbose: bool,
    train: Callable[..., Any],
    fit_kwargs: dict,
) -> None:
    """Entry point of a spawned rank: join the group, train, rank 0 writes the result."""
    torch.set_num_threads(threads)  # the ranks share the machine's cores
    if cuda:
        torch.cuda.set_device(rank)
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    dist.init_process_group(
        "nccl" if cuda else "gloo",
        init_method=f"file://{Path(store) / 'store'}",
        rank=rank,
        world_size=world_size,
    )
    try:
        # the spawn pickling put the weights in shared memory: without a private copy, every
        # rank's optimiser would step the same tensors
        net = copy.deepcopy(net)
        generator = torch.Generator().set_state(generator_state)
        history = _train_rank(
            rank, world_size, device, net, data, generator, verbose, train, fit_kwargs
        )
        if rank == 0:
            result = {
                "state": {k: v.cpu() for k, v in net.state_dict().items()},
                "history": history,
                "world_size": dist.get_world_size(),
                "generator": generator.get_state(),
            }
            torch.save(result, Path(store) / "result.pt")
        dist.barrier()  # leave together: no rank tears its pairs down under another's feet
    finally:
        dist.destroy_process_group()
    # The work is done and written. A normal interpreter exit runs C++ static destructors
    # while gloo's threads may still wind down, which aborted about one rank in ten
    # ("terminate called without an active exception", SIGABRT) after a complete fit;
    # leaving without them cannot lose anything: the result is on disk.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# What a rank needs before it can train: this module (torch, the training loops) and
# torch._dynamo, which the first optimiser construction imports (about 2 s of CPU each).
RANK_PRELOAD = (__name__, "torch._dynamo")


def start_method() -> str:
    """How ranks are started: ``"forkserver"`` where the platform has it, else ``"spawn"``.

    A forkserver is one clean process (no CUDA, no threads) that imports ``RANK_PRELOAD``
    once and forks every rank from then on: a fit with two ranks pays one interpreter start
    instead of two, and later fits in the same session pay none. Under ``"spawn"`` every rank
    is a new interpreter importing torch, sktime and aaren_ts. Either way the ranks unpickle
    their arguments, and a script that calls ``fit`` needs ``if __name__ == "__main__":``
    (the main module is imported again, as under ``spawn``). Modules a user asked the
    forkserver to preload are kept; once the server runs, its preload list is fixed, and
    ranks see the environment variables it started with (set ``CUDA_VISIBLE_DEVICES`` and
    the like before the session's first data-parallel fit).

    Examples
    --------
    >>> start_method() in ("forkserver", "spawn")
    True
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return "spawn"
    from multiprocessing import forkserver

    # the list is the forkserver's own (multiprocessing offers a setter, no getter)
    preload = list(getattr(forkserver._forkserver, "_preload_modules", ["__main__"]))
    missing = [module for module in RANK_PRELOAD if module not in preload]
    if missing:
        forkserver.set_forkserver_preload([*preload, *missing])
    return "forkserver"


def fit_data_parallel(
    net: torch.nn.Module,
    data: Any,
    *,
    processes: int,
    device: torch.device,
    generator: torch.Generator,
    verbose: bool = False,
    train: Callable[..., Any] = fit_network,
    **fit_kwargs: Any,
) -> tuple[Any, int]:
    """Train ``net`` (in place) data-parallel; returns what ``train`` returns (the loss
    history) on rank 0 and the world size.

    Inside a launched group (``torchrun``) this process is one rank: it trains on this node's
    device (``cuda:LOCAL_RANK`` with a CUDA ``device``) and the group's size is the world
    size. Otherwise ``processes`` ranks are spawned on this machine. ``generator`` ends as
    it would after single-process training. ``data`` (``SeriesData``/``WindowData`` for
    ``fit_network``, ``PanelData`` for ``train_panel``) and ``fit_kwargs`` go to ``train``,
    a module-level function (spawned ranks unpickle it).
    """
    if launched():
        return _fit_in_launched_group(net, data, device, generator, verbose, train, fit_kwargs)
    if multiprocessing.current_process().daemon:
        raise RuntimeError(
            f"devices={processes} spawns {processes} training processes, which this daemonic "
            "worker process (of dask, loky or a multiprocessing pool) may not start: "
            "use devices=1 inside parallel evaluation, or launch the ranks with torchrun"
        )
    threads = max(1, torch.get_num_threads() // processes)
    with tempfile.TemporaryDirectory(prefix="aaren_ddp_") as store:
        torch.multiprocessing.start_processes(
            _spawned_rank,
            args=(
                processes,
                store,
                device.type == "cuda",
                threads,
                copy.deepcopy(net).cpu(),
                _data_on(data, torch.device("cpu")),
                generator.get_state(),
                verbose,
                train,
                fit_kwargs,
            ),
            nprocs=processes,
            join=True,
            start_method=start_method(),
        )
        result = torch.load(Path(store) / "result.pt")
    net.load_state_dict(result["state"])
    net.eval()
    generator.set_state(result["generator"])
    return result["history"], result["world_size"]


def train_network(
    net: torch.nn.Module,
    data: Any,
    *,
    processes: int,
    strategy: str,
    device: torch.device,
    generator: torch.Generator,
    verbose: bool,
    progress: Callable[[], tuple[Callable[..., None] | None, Callable[[], None]]],
    train: Callable[..., Any] = fit_network,
    **fit_kwargs: Any,
) -> tuple[Any, int]:
    """``train`` on ``data``: data-parallel when ``processes`` and ``strategy`` ask for it
    (``fit_data_parallel``), else in this process, reporting through ``progress()``'s
    ``(on_epoch, close)``. Returns ``train``'s result and the world size."""
    if wants_data_parallel(processes, strategy):
        return fit_data_parallel(
            net,
            data,
            processes=processes,
            device=device,
            generator=generator,
            verbose=verbose,
            train=train,
            **fit_kwargs,
        )
    report, close = progress()
    try:
        return train(net, data, generator=generator, on_epoch=report, **fit_kwargs), 1
    finally:
        close()


def _fit_in_launched_group(net, data, device, generator, verbose, train, fit_kwargs):
    created = not dist.is_initialized()
    cuda = device.type == "cuda"
    if created:  # torchrun set MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE
        dist.init_process_group("nccl" if cuda else "gloo", init_method="env://")
    rank_device = device
    if cuda:
        rank_device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(rank_device)
    try:
        rank, world_size = dist.get_rank(), dist.get_world_size()
        history = _train_rank(
            rank, world_size, rank_device, net, data, generator, verbose, train, fit_kwargs
        )
    finally:
        if created:
            dist.destroy_process_group()
    net.to(device)
    return history, world_size
