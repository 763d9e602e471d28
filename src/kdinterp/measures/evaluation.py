"""Stage ``evaluate_*@``: classification metrics and validation logits of one model."""

from __future__ import annotations

import numpy as np
import torch

from kdinterp.training.data import eval_loader, load_dataset
from kdinterp.core.errors import NonFiniteError
from kdinterp.measures.classification import classification_metrics, predict
from kdinterp.core.io import atomic_path, write_json
from kdinterp.core.params import Params
from kdinterp.core.progress import log
from kdinterp.core.runtime import configure_torch
from kdinterp.training.checkpoints import load_trained, resolve_device
from kdinterp.core.study import Layout, Model

__all__ = ["evaluate_model"]


def evaluate_model(params: Params, model: Model, layout: Layout) -> dict:
    """Stage ``evaluate_*@<key>``: top-1/top-5/NLL/ECE on val; also saves the val logits for ``similarity``.

    Writes ``layout.metrics(model)`` (JSON: ``model``, ``seed``, ``group``, ``role`` and the metrics of
    :func:`kdinterp.measures.classification.classification_metrics`) and ``layout.predictions(model)`` (``logits
    (N, K)`` float32, ``targets (N,)`` int64).

    Raises:
        CheckpointError, NonFiniteError: the model file is missing, malformed or has non-finite weights
            (:func:`kdinterp.training.models.load_model`), or its logits are NaN or infinite; nothing is written.
    """
    configure_torch()
    data = params.data
    net, _, _ = load_trained(params, model, layout.model_file(model))
    loader = eval_loader(load_dataset(data, train=False), data.eval_batch_size, num_workers=data.num_workers)
    logits, targets = predict(net, loader, resolve_device(), label=f"evaluate {model.key}")
    bad = (~torch.isfinite(logits)).any(1).nonzero()[:, 0]
    if bad.numel():
        raise NonFiniteError(f"{layout.model_file(model)}: the logits are NaN or infinite on {bad.numel()} of "
                             f"{len(logits)} validation image(s) of {data.val_dir} (first: #{int(bad[0])}); the "
                             "model is broken: retrain it (`dvc repro`)")
    result = {"model": model.name, "seed": model.seed, "group": model.group.kind, "role": model.role or "",
              **classification_metrics(logits, targets)}
    with atomic_path(layout.predictions(model)) as tmp:
        np.savez(tmp, logits=logits.numpy(), targets=targets.numpy())
    write_json(layout.metrics(model), result)
    name = model.key
    log(f"{name}: top-1 {result['top1']:.4f}, top-5 {result['top5']:.4f}, NLL {result['nll']:.4f}, ECE {result['ece']:.4f}")
    return result
