"""Stage ``evaluate_*@``: classification metrics and validation logits of one model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdinterp.data import build_transform, image_folder, make_loader
from kdinterp.evaluate import classification_metrics, predict
from kdinterp.io import atomic_path, write_json
from kdinterp.params import Params
from kdinterp.progress import log
from kdinterp.stages.common import load_trained, resolve_device

__all__ = ["evaluate_model"]


def evaluate_model(params: Params, name: str, model_path: Path, metrics: Path, predictions: Path) -> dict:
    """Stage ``evaluate@<name>``: top-1/top-5/NLL/ECE on val; also saves the val logits for ``similarity``."""
    data = params.data
    model, header, _ = load_trained(params, name, model_path)
    loader = make_loader(image_folder(data.val_dir, build_transform(data, train=False)), data.eval_batch_size,
                         shuffle=False, num_workers=data.num_workers)
    logits, targets = predict(model, loader, resolve_device(), label=f"evaluate {name}")
    result = {"model": name, "role": header["info"].get("role", ""), **classification_metrics(logits, targets)}
    with atomic_path(predictions) as tmp:
        np.savez(tmp, logits=logits.numpy(), targets=targets.numpy())
    write_json(metrics, result)
    log(f"{name}: top-1 {result['top1']:.4f}, top-5 {result['top5']:.4f}, NLL {result['nll']:.4f}, ECE {result['ece']:.4f}")
    return result
