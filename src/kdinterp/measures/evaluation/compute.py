"""Stage ``evaluate_*@``: classification metrics and validation logits of one model."""

from __future__ import annotations

import numpy as np
import torch

from kdinterp.core.errors import NonFiniteError
from kdinterp.core.io import atomic_path
from kdinterp.core.params import Params
from kdinterp.core.progress import log
from kdinterp.core.runtime import configure_torch, resolve_device
from kdinterp.core.study import Layout, Model
from kdinterp.measures.evaluation import MEASURE, METRICS, PREDICTIONS, EvaluationSummary
from kdinterp.measures.evaluation.metrics import classification_metrics, predict
from kdinterp.training.data import eval_loader, load_dataset
from kdinterp.training.models import load_trained

__all__ = ["evaluate_model"]


def evaluate_model(params: Params, model: Model, layout: Layout) -> EvaluationSummary:
    """Stage ``evaluate_*@<key>``: top-1/top-5/NLL/ECE on val; also saves the val logits for ``similarity``.

    Writes ``metrics.json`` (:class:`~kdinterp.measures.evaluation.EvaluationSummary`, the metrics of
    :func:`~kdinterp.measures.evaluation.metrics.classification_metrics`) and ``predictions.npz``
    (``logits (N, K)`` float32, ``targets (N,)`` int64).

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
    summary = EvaluationSummary(model=model.name, seed=model.seed, group=model.group.kind, role=model.role or "",
                                **classification_metrics(logits, targets))
    with atomic_path(MEASURE.path(layout, model, PREDICTIONS)) as tmp:
        np.savez(tmp, logits=logits.numpy(), targets=targets.numpy())
    summary.write(MEASURE.path(layout, model, METRICS))
    log(f"{model.key}: top-1 {summary.top1:.4f}, top-5 {summary.top5:.4f}, NLL {summary.nll:.4f}, "
        f"ECE {summary.ece:.4f}")
    return summary
