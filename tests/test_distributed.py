"""torchrun: 2 CPU processes (gloo) reach the weights of one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import write_image_folder

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "ddp_worker.py"
BIN = Path(sys.executable).parent


def _run(command: list[str], cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KDINTERP_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "data", ["a", "b", "c"], per_class=8, size=16)  # 24 images, 3 batches
    _run([sys.executable, str(WORKER), str(data), str(tmp_path / "ck1"), str(tmp_path / "one.pt")], tmp_path)
    _run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2",
          str(WORKER), str(data), str(tmp_path / "ck2"), str(tmp_path / "two.pt")], tmp_path)
    one = torch.load(tmp_path / "one.pt", weights_only=True)
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    for key in one:
        # Same samples per global batch, gradients averaged by DDP: equal up to float32 summation order.
        assert torch.allclose(one[key], two[key], rtol=1e-4, atol=1e-6), (key, (one[key] - two[key]).abs().max())
    assert not torch.equal(one["0.weight"], torch.zeros_like(one["0.weight"]))


def test_batch_size_must_divide_among_processes() -> None:
    from kdinterp.training.distributed import Context
    from kdinterp.training.train import _epoch_loader

    with pytest.raises(ValueError, match="batch_size 9 is not divisible by the 2 processes"):
        _epoch_loader([0] * 20, 9, 0, 0, Context(0, 2, torch.device("cpu")))
