"""The training loop: seeded, checkpointed every epoch, resumable, loud on a non-finite loss.

``fit`` trains a :class:`~kdinterp.distill.Distiller` with SGD + momentum and a per-epoch
learning-rate schedule. Every epoch re-seeds the augmentation RNG and the loader's shuffling from
``(seed, epoch)``, so a run killed mid-epoch and resumed from the last epoch checkpoint ends with
the same weights as an uninterrupted run (on the same device and library versions).

The reported model is the *last* epoch's (the paper's torchdistill runs kept the best-val
checkpoint; selecting on the evaluation split inflates accuracy, cf. mdistiller#7).
"""

from __future__ import annotations

import math
import pickle
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from kdinterp.data import make_loader
from kdinterp.distill import Distiller
from kdinterp.io import atomic_path
from kdinterp.params import OptimParams
from kdinterp.progress import log, progress_bar

__all__ = ["NonFiniteLossError", "fit", "lr_factor"]

CHECKPOINT = "last.pt"


class NonFiniteLossError(RuntimeError):
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


def fit(distiller: Distiller, train_set: Dataset, val_loader: DataLoader | None, optim: OptimParams, *,
        seed: int, checkpoint_dir: Path, fingerprint: str, device: torch.device,
        num_workers: int = 0, label: str = "train") -> list[dict[str, float]]:
    """Train ``distiller``'s student for ``optim.epochs`` epochs, resuming if possible.

    Args:
        distiller: the student and its supervision; moved to ``device``.
        train_set: training data set yielding ``(image (3, H, W), class index)``.
        val_loader: if given, top-1 on it is logged after every epoch (monitoring only).
        optim: epochs, batch size, SGD and schedule settings.
        seed: base seed; epoch ``e`` uses ``seed * 1000 + e`` for shuffling and augmentation.
        checkpoint_dir: where ``last.pt`` is written after every epoch and read to resume.
        fingerprint: identifies the configuration; a checkpoint with another fingerprint is
            ignored (training restarts from scratch) so stale state is never resumed.
        device: where to train.
        num_workers: DataLoader worker processes.
        label: shown on the progress bar.

    Returns:
        One dict per epoch: ``epoch`` (1-based), ``lr``, each loss term, ``loss``,
        ``train_top1``, ``val_top1`` (if ``val_loader``). Wall time is only logged, so that the
        history, like the weights, is identical between runs.

    Raises:
        NonFiniteLossError: a batch loss is NaN/inf; the message names epoch, step and terms.
    """
    distiller.to(device)
    optimizer = torch.optim.SGD(distiller.learnable_parameters(), lr=optim.lr, momentum=optim.momentum,
                                weight_decay=optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(optim))
    start, history = _resume(checkpoint_dir / CHECKPOINT, fingerprint, distiller, optimizer, scheduler)
    for epoch in range(start, optim.epochs):
        torch.manual_seed(seed * 1000 + epoch)
        loader = make_loader(train_set, optim.batch_size, shuffle=True, seed=seed * 1000 + epoch,
                             num_workers=num_workers, drop_last=len(train_set) > optim.batch_size)
        began = time.perf_counter()
        stats = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
        stats |= train_one_epoch(distiller, loader, optimizer, epoch, device, f"{label} {epoch + 1}/{optim.epochs}")
        scheduler.step()
        if val_loader is not None:
            stats["val_top1"] = top1(distiller.student, val_loader, device)
        history.append(stats)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in stats.items() if k != "epoch")
        log(f"{label} epoch {epoch + 1}/{optim.epochs}: {shown} ({time.perf_counter() - began:.1f} s)")
        _save_checkpoint(checkpoint_dir / CHECKPOINT, fingerprint, distiller, optimizer, scheduler, epoch + 1, history)
    return history


def train_one_epoch(distiller: Distiller, loader: DataLoader, optimizer: torch.optim.Optimizer, epoch: int,
                    device: torch.device, label: str) -> dict[str, float]:
    """One pass over ``loader``; returns the sample-weighted mean of each loss term and train top-1."""
    distiller.train()
    sums: dict[str, float] = defaultdict(float)
    correct = seen = 0
    with progress_bar(label, total=len(loader)) as advance:
        for step, (images, targets) in enumerate(loader):
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            logits, terms = distiller.forward_train(images, targets)
            loss = torch.stack(list(terms.values())).sum()
            if not torch.isfinite(loss):
                shown = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
                raise NonFiniteLossError(f"epoch {epoch + 1}, step {step}: loss is {loss.item()} ({shown}); "
                                         "lower the learning rate or check the inputs")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n = len(targets)
            seen += n
            correct += int((logits.argmax(1) == targets).sum())
            for name, value in {**terms, "loss": loss}.items():
                sums[name] += float(value.detach()) * n
            advance(1, f"loss {float(loss.detach()):.3f}")
    return {name: total / seen for name, total in sums.items()} | {"train_top1": correct / seen}


@torch.no_grad()
def top1(model: torch.nn.Module, loader: DataLoader, device: torch.device) -> float:
    """Top-1 accuracy (fraction) of ``model`` on ``loader``; restores the model's train/eval mode."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for images, targets in loader:
        logits = model(images.to(device))
        correct += int((logits.argmax(1).cpu() == targets).sum())
        total += len(targets)
    model.train(was_training)
    return correct / max(total, 1)


def _save_checkpoint(path: Path, fingerprint: str, distiller: Distiller, optimizer: torch.optim.Optimizer,
                     scheduler: Any, epoch: int, history: list[dict[str, float]]) -> None:
    state = {"fingerprint": fingerprint, "epoch": epoch, "history": history,
             "student": distiller.student.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _resume(path: Path, fingerprint: str, distiller: Distiller, optimizer: torch.optim.Optimizer,
            scheduler: Any) -> tuple[int, list[dict[str, float]]]:
    """Load ``path`` if it belongs to this configuration; return ``(start_epoch, history)``."""
    if not path.is_file():
        return 0, []
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as err:
        log(f"ignoring unreadable checkpoint {path}: {err}")
        return 0, []
    if state.get("fingerprint") != fingerprint:
        log(f"ignoring checkpoint {path}: it belongs to another configuration; training from scratch")
        return 0, []
    distiller.student.load_state_dict(state["student"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    log(f"resuming from {path} after epoch {state['epoch']}")
    return int(state["epoch"]), list(state["history"])
