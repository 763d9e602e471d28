"""Run by tests/test_distributed.py, once in a single process and once under torchrun.

Trains a tiny CNN (no batch-dependent layers, so the comparison is exact up to float rounding)
with :func:`kdinterp.training.train.fit` on an ImageFolder tree and writes the final weights (rank 0).
Usage: python tests/ddp_worker.py DATA_DIR CHECKPOINT_DIR OUT_FILE
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from kdinterp.core.params import DataParams, OptimParams
from kdinterp.training import distributed
from kdinterp.training.data import normalize
from kdinterp.training.distill import Vanilla
from kdinterp.training.folders import image_folder
from kdinterp.training.train import fit


def main(data_dir: str, checkpoints: str, out: str) -> None:
    torch.manual_seed(0)
    student = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                            nn.Linear(32, 3))
    data = DataParams(train_dir=data_dir, val_dir=data_dir, image_size=16, augment="crop_flip",
                      mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    optim = OptimParams(epochs=2, batch_size=8, lr=0.1)
    ctx = distributed.context(torch.device("cpu"))
    fit(Vanilla(student), image_folder(data_dir, normalize(data)), None, optim, seed=1,
        checkpoint_dir=Path(checkpoints), fingerprint="ddp-test", device=torch.device("cpu"))
    if ctx.is_main:
        torch.save(student.state_dict(), out)


if __name__ == "__main__":
    main(*sys.argv[1:])
