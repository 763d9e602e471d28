"""Helpers shared by the stage modules."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from torch import nn

from kdinterp.training.data import class_names
from kdinterp.training.models import CheckpointError, load_model
from kdinterp.core.params import Params
from kdinterp.core.study import Model

__all__ = ["load_trained", "resolve_device", "sha256_file"]


def resolve_device(choice: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU.

    Raises:
        RuntimeError: ``cuda`` was asked for but is not available.
    """
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False; use 'auto' or 'cpu'")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def load_trained(params: Params, model: Model, path: Path) -> tuple[nn.Module, dict, list[str]]:
    """Load ``model`` from ``path``, checking its architecture, seed and classes against params and data.

    Returns:
        ``(model, header, classes)`` with ``classes`` the data set's class names in logit order.

    Raises:
        CheckpointError: the file is missing, malformed, of another architecture, or was trained
            on other classes than the data set in ``params.data``.
        DataError: the data set is missing.
    """
    net, header = load_model(path, model.arch)
    seed = header["info"].get("seed")
    if seed is not None and seed != model.seed:
        raise CheckpointError(f"{path}: trained with seed {seed}, but {model.key} has seed {model.seed}; "
                              f"retrain it (`dvc repro {model.stage('train')}`)")
    classes = class_names(params.data)
    if header["classes"] != classes:
        raise CheckpointError(f"{path}: trained on other classes ({len(header['classes'])}) than "
                              f"{params.data.train_dir} has ({len(classes)}); retrain it (`dvc repro`)")
    return net, header, classes
