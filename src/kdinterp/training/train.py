"""The training loop: seeded, checkpointed every epoch, resumable, loud on a non-finite loss.

``fit`` trains a :class:`~kdinterp.training.distill.Distiller` with SGD + momentum and a per-epoch
learning-rate schedule. Every epoch re-seeds the augmentation RNG and the loader's shuffling from
``(seed, epoch)``, so a run killed mid-epoch and resumed from the last epoch checkpoint ends with
the same weights as an uninterrupted run (on the same device and library versions).

A training set in memory (:class:`~kdinterp.training.memory_data.InMemoryImages`, from
:func:`kdinterp.training.data.load_dataset`) needs no DataLoader: each epoch slices batches from its
uint8 tensor in the order DistributedSampler would give and crops, flips and normalises them on
the device (:class:`~kdinterp.training.memory_data.TrainBatches`).

The reported model is the *last* epoch's (the paper's torchdistill runs kept the best-val
checkpoint; selecting on the evaluation split inflates accuracy, cf. mdistiller#7).
"""

from __future__ import annotations

import math
import pickle
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from kdinterp.core.errors import NonFiniteError
from kdinterp.core.io import atomic_path
from kdinterp.core.params import OptimParams
from kdinterp.core.progress import log, progress_bar
from kdinterp.training import distributed
from kdinterp.training.data import WithIndex, eval_loader
from kdinterp.training.distill import Distiller
from kdinterp.training.memory_data import InMemoryImages, TrainBatches

__all__ = ["NonFiniteLossError", "fit", "lr_factor", "read_snapshots"]

CHECKPOINT = "last.pt"


class NonFiniteLossError(NonFiniteError, RuntimeError):
    """The training loss became NaN or infinite."""


def lr_factor(optim: OptimParams) -> Callable[[int], float]:
    """Learning-rate multiplier as a function of the epoch index (0-based).

    ``cosine``: ``0.5 * (1 + cos(pi * epoch / epochs))``; ``multistep``: ``gamma ** (number of
    milestones <= epoch)`` (torch's ``MultiStepLR``); ``constant``: 1.
    """
    if optim.schedule == "cosine":
        return lambda epoch: 0.5 * (1.0 + math.cos(math.pi * epoch / optim.epochs))
    if optim.schedule == "multistep":
        return lambda epoch: optim.gamma ** sum(epoch >= m for m in optim.milestones)
    return lambda epoch: 1.0


def fit(distiller: Distiller, train_set: Dataset, val_loader: Iterable | Dataset | None, optim: OptimParams, *,
        seed: int, checkpoint_dir: Path, fingerprint: str, device: torch.device,
        num_workers: int = 0, label: str = "train", eval_batch_size: int = 256,
        snapshot_epochs: Sequence[int] = ()) -> list[dict[str, float]]:
    """Train ``distiller``'s student for ``optim.epochs`` epochs, resuming if possible.

    Under ``torchrun`` (see :mod:`kdinterp.training.distributed`) every process runs this function on its
    share of each global batch of ``optim.batch_size`` images, the distiller is wrapped in
    DistributedDataParallel (gradients averaged over processes), statistics are summed over
    processes, and only rank 0 writes the checkpoint.

    Args:
        distiller: the student and its supervision; moved to ``device``.
        train_set: training data set yielding ``(image (3, H, W), class index)``. An
            :class:`~kdinterp.training.memory_data.InMemoryImages` is read without a DataLoader: its
            uint8 images go to ``device`` once, and every batch is gathered, cropped, flipped and
            normalised there (``num_workers`` unused).
        val_loader: if given, top-1 on it is logged after every epoch (monitoring only): a
            DataLoader or :func:`kdinterp.training.data.eval_loader`'s batches ``(images, targets)``, or
            an evaluation data set (``load_dataset(data, train=False)``), which is read through
            ``eval_loader(val_loader, eval_batch_size, num_workers=num_workers, device=device)``.
        optim: epochs, global batch size, SGD, schedule and CUDA precision settings.
        seed: base seed; epoch ``e`` uses ``seed * 1000 + e`` for shuffling (both paths: the
            order of ``DistributedSampler(seed=seed * 1000 + e)``) and ``seed * 1000 + e + 7919 *
            rank`` for augmentation (global RNG; in memory: the epoch's ``torch.Generator``).
        checkpoint_dir: where ``last.pt`` is written after every epoch and read to resume.
        fingerprint: identifies the configuration; a checkpoint with another fingerprint is
            ignored (training restarts from scratch) so stale state is never resumed.
        device: where to train (under torchrun on CUDA: this process's GPU).
        num_workers: DataLoader worker processes.
        label: shown on the progress bar.
        eval_batch_size: batch size for a ``val_loader`` given as a data set.
        snapshot_epochs: after each of these epochs (1-based) the student's ``state_dict`` (CPU
            copies) is kept in ``last.pt`` (saved with the epoch's checkpoint, carried by every later
            one, restored on resume), so a resumed run has the same snapshots as an uninterrupted
            one; :func:`read_snapshots` reads them after the run. Put them in ``fingerprint``: a
            checkpoint is only resumed by a run that wants the snapshots it holds.

    Returns:
        One dict per epoch: ``epoch`` (1-based), ``lr``, each loss term, ``loss``,
        ``train_top1``, ``val_top1`` (if ``val_loader``). Wall time is only logged, so that the
        history, like the weights, is identical between runs.

    Raises:
        NonFiniteLossError: a batch loss is NaN/inf; the message names epoch, step and terms.
        ValueError: the global batch size is not divisible by the number of processes; a snapshot
            epoch is outside ``1..optim.epochs``.
    """
    if any(not 1 <= e <= optim.epochs for e in snapshot_epochs):
        raise ValueError(f"snapshot epochs {list(snapshot_epochs)} must lie in 1..{optim.epochs}")
    ctx = distributed.context(device)
    distiller.to(ctx.device)
    if optim.channels_last and ctx.device.type == "cuda":
        distiller.to(memory_format=torch.channels_last)
    state = _load_checkpoint(checkpoint_dir / CHECKPOINT, fingerprint)
    if state is None:
        distiller.prepare(train_set, ctx.device, seed)
    else:
        distiller.load_trainable_state_dict(state["distiller"])
    optimizer = torch.optim.SGD(distiller.learnable_parameters(), lr=optim.lr, momentum=optim.momentum,
                                weight_decay=optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(optim))
    start, history, snapshots = 0, [], {}
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, history = int(state["epoch"]), list(state["history"])
        snapshots = dict(state.get("snapshots", {}))
        _log(ctx, f"resuming from {checkpoint_dir / CHECKPOINT} after epoch {start}")
    model = _data_parallel(distiller, ctx)
    if isinstance(val_loader, Dataset):
        val_loader = eval_loader(val_loader, eval_batch_size, num_workers=num_workers, device=ctx.device)
    pixels = train_set.images.to(ctx.device) if isinstance(train_set, InMemoryImages) else None
    for epoch in range(start, optim.epochs):
        augment_seed = seed * 1000 + epoch + 7919 * ctx.rank  # augmentation: one stream per process
        torch.manual_seed(augment_seed)
        if isinstance(train_set, InMemoryImages):
            loader = _epoch_batches(train_set, pixels, optim.batch_size, seed * 1000 + epoch, augment_seed, ctx)
        else:
            loader = _epoch_loader(WithIndex(train_set), optim.batch_size, seed * 1000 + epoch, num_workers, ctx)
        began = time.perf_counter()
        stats = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
        stats |= train_one_epoch(model, loader, optimizer, epoch, ctx, optim, f"{label} {epoch + 1}/{optim.epochs}")
        scheduler.step()
        if val_loader is not None:
            stats["val_top1"] = top1(distiller.student, val_loader, ctx.device)
        history.append(stats)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in stats.items() if k != "epoch")
        _log(ctx, f"{label} epoch {epoch + 1}/{optim.epochs}: {shown} ({time.perf_counter() - began:.1f} s)")
        if epoch + 1 in snapshot_epochs:
            weights = distiller.student.state_dict()
            snapshots[epoch + 1] = {k: v.detach().to("cpu", copy=True) for k, v in weights.items()}
        if ctx.is_main:
            _save_checkpoint(checkpoint_dir / CHECKPOINT, fingerprint, distiller, optimizer, scheduler, epoch + 1,
                             history, snapshots)
        distributed.barrier(ctx)
    return history


def _data_parallel(distiller: Distiller, ctx: distributed.Context) -> torch.nn.Module:
    """The distiller wrapped in DistributedDataParallel under torchrun, else itself."""
    if not ctx.distributed:
        return distiller
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(distiller, device_ids=device_ids)


def _epoch_loader(dataset: Dataset, batch_size: int, seed: int, num_workers: int,
                  ctx: distributed.Context) -> DataLoader:
    """This epoch's shuffled loader; under torchrun each process gets ``batch_size / world_size``.

    The order is ``torch.randperm(n)`` from a generator seeded with ``seed`` (DistributedSampler,
    also for one process), dealt out round-robin to the processes, so global batch ``b`` holds the
    same images whatever the number of processes.
    """
    if batch_size % ctx.world_size:
        raise ValueError(f"batch_size {batch_size} is not divisible by the {ctx.world_size} processes")
    sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed,
                                 drop_last=True)
    return DataLoader(dataset, batch_size=batch_size // ctx.world_size, sampler=sampler, num_workers=num_workers,
                      drop_last=len(dataset) > batch_size, pin_memory=ctx.device.type == "cuda",  # type: ignore[arg-type]
                      generator=torch.Generator().manual_seed(seed))


def _epoch_batches(dataset: InMemoryImages, pixels: torch.Tensor, batch_size: int, seed: int, augment_seed: int,
                   ctx: distributed.Context) -> TrainBatches:
    """This epoch's in-memory batches: the same samples per process and batch as :func:`_epoch_loader`.

    The order is DistributedSampler's itself (same ``seed``, rank, world size, ``drop_last``); the
    batches are cut as that DataLoader cuts them; crops and flips come from ``augment_seed``.
    """
    if batch_size % ctx.world_size:
        raise ValueError(f"batch_size {batch_size} is not divisible by the {ctx.world_size} processes")
    sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed,
                                 drop_last=True)
    order = torch.tensor(list(sampler), dtype=torch.int64)
    return TrainBatches(dataset, order, batch_size // ctx.world_size, drop_last=len(dataset) > batch_size,
                        seed=augment_seed, device=ctx.device, images=pixels)


def train_one_epoch(model: torch.nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer, epoch: int,
                    ctx: distributed.Context, optim: OptimParams, label: str) -> dict[str, float]:
    """One pass over ``loader`` (a DataLoader or :class:`~kdinterp.training.memory_data.TrainBatches`: batches with ``len()``).

    ``model`` is a :class:`~kdinterp.training.distill.Distiller` (or its DDP wrapper): called with
    ``(images, targets, indices)`` it returns ``(logits, loss terms)``.

    Returns:
        The sample-weighted mean of each loss term and ``train_top1``, over all processes.
    """
    model.train()
    sums: dict[str, float] = defaultdict(float)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=optim.amp_bf16 and ctx.device.type == "cuda")
    with progress_bar(label, total=len(loader), enabled=ctx.is_main) as advance:
        for step, (images, targets, indices) in enumerate(loader):
            images, targets, indices = (t.to(ctx.device, non_blocking=True) for t in (images, targets, indices))
            if optim.channels_last and ctx.device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast:
                logits, terms = model(images, targets, indices)
                loss = torch.stack([t.float() for t in terms.values()]).sum()
            if not torch.isfinite(loss):
                shown = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
                raise NonFiniteLossError(f"epoch {epoch + 1}, step {step}: loss is {loss.item()} ({shown}); "
                                         "lower the learning rate or check the inputs")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n = len(targets)
            sums["seen"] += n
            sums["correct"] += int((logits.argmax(1) == targets).sum())
            for name, value in {**terms, "loss": loss}.items():
                sums[name] += float(value.detach()) * n
            advance(1, f"loss {float(loss.detach()):.3f}")
    totals = distributed.all_reduce_sum(dict(sums), ctx)
    seen, correct = totals.pop("seen"), totals.pop("correct")
    return {name: total / seen for name, total in totals.items()} | {"train_top1": correct / seen}


def _log(ctx: distributed.Context, message: str) -> None:
    if ctx.is_main:
        log(message)


@torch.no_grad()
def top1(model: torch.nn.Module, loader: Iterable, device: torch.device) -> float:
    """Top-1 accuracy (fraction) of ``model`` on ``loader``; restores the model's train/eval mode.

    ``loader`` yields ``(images (B, 3, H, W), targets int64 (B,))``: a DataLoader or
    :func:`kdinterp.training.data.eval_loader`'s batches (targets on any device).
    """
    was_training = model.training
    model.eval()
    correct = total = 0
    for images, targets in loader:
        logits = model(images.to(device))
        correct += int((logits.argmax(1).cpu() == targets.cpu()).sum())
        total += len(targets)
    model.train(was_training)
    return correct / max(total, 1)


def _save_checkpoint(path: Path, fingerprint: str, distiller: Distiller, optimizer: torch.optim.Optimizer,
                     scheduler: Any, epoch: int, history: list[dict[str, float]],
                     snapshots: dict[int, dict[str, torch.Tensor]]) -> None:
    state = {"fingerprint": fingerprint, "epoch": epoch, "history": history,
             "distiller": distiller.trainable_state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "snapshots": snapshots}
    # Saved through a file object: given a path, torch.save names the archive after the (random)
    # temporary file, and identical checkpoints would get different bytes and DVC hashes.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)


def read_snapshots(checkpoint_dir: Path, fingerprint: str, epochs: Sequence[int]) -> dict[int, dict[str, torch.Tensor]]:
    """The student's weights after each of ``epochs``, as :func:`fit` kept them in ``checkpoint_dir/last.pt``.

    Args:
        checkpoint_dir: the run's ``checkpoint_dir``.
        fingerprint: the run's fingerprint.
        epochs: the ``snapshot_epochs`` of the run (1-based).

    Returns:
        epoch -> the student's ``state_dict`` after that epoch (CPU tensors), for each of ``epochs``.

    Raises:
        FileNotFoundError: ``last.pt`` is missing, unreadable, or of another configuration, or lacks
            one of ``epochs`` (the run did not finish those epochs with these snapshot epochs).
    """
    state = _load_checkpoint(checkpoint_dir / CHECKPOINT, fingerprint)
    kept = {} if state is None else state.get("snapshots", {})
    missing = [e for e in epochs if e not in kept]
    if missing:
        raise FileNotFoundError(f"{checkpoint_dir / CHECKPOINT}: no snapshot of epoch(s) {missing} for this run; "
                                "the training run did not finish them (rerun the train stage)")
    return {e: kept[e] for e in epochs}


def _load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it belongs to this configuration, else None (train from scratch)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as err:
        log(f"ignoring unreadable checkpoint {path}: {err}")
        return None
    if state.get("fingerprint") != fingerprint:
        log(f"ignoring checkpoint {path}: it belongs to another configuration; training from scratch")
        return None
    return state
