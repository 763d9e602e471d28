"""Stages ``train_teacher@``, ``train_student@``, ``distill_student@`` and ``self_distill_student@``.

One function trains any model of the study (:func:`train`): the study contract
(:mod:`kdinterp.study`) says which recipe, seed, method and teacher the model has and where its
outputs go; the method table builds its :class:`~kdinterp.distill.Distiller`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import torch

import kdinterp.methods  # noqa: F401  the builders that study.METHODS names; imported so they are in this stage's code
from kdinterp import codedeps, distributed, study
from kdinterp.data import class_names, load_dataset
from kdinterp.io import atomic_path
from kdinterp.models import build_model, save_model
from kdinterp.params import Params, as_dict
from kdinterp.progress import log
from kdinterp.runtime import configure_torch, environment_record
from kdinterp.stages.common import load_trained, resolve_device, sha256_file
from kdinterp.train import fit

__all__ = ["initial_model", "train", "write_initial"]


def train(params: Params, model: study.Model, layout: study.Layout) -> None:
    """Train ``model`` from scratch (or resume its checkpoint) and write its outputs.

    A control (``model.group.trained`` False) is not trained: only its initial weights are written
    (:func:`write_initial`).

    Writes ``layout.model_file(model)`` (weights + header with the recipe, seed and environment),
    ``layout.history(model)`` (per-epoch CSV) and, every epoch, ``layout.checkpoints(model)/last.pt``.
    The seed fixes the initialisation (``torch.manual_seed(seed)`` right before the model is
    built) and, through :func:`kdinterp.train.fit`, the data order and augmentation: students of
    one seed start from the same weights and see the same batches.

    Raises:
        CheckpointError: the teacher file is missing or does not match its params.
        DataError: the data set is missing or inconsistent.
        NonFiniteLossError: the loss became NaN or infinite.
    """
    configure_torch()
    if not model.group.trained:
        write_initial(params, model, layout)
        return
    data = params.data
    teacher, info = None, {"name": model.name, "seed": model.seed, "group": model.group.kind,
                           "method": model.method, **as_dict(model.recipe)}
    if model.teacher is not None:
        teacher_path = layout.model_file(model.teacher)
        teacher, _, _ = load_trained(params, model.teacher, teacher_path)
        info["teacher_sha256"] = sha256_file(teacher_path)
    train_set = load_dataset(data, train=True)
    val_set = load_dataset(data, train=False)
    classes = list(train_set.classes)
    student = initial_model(model, len(classes))
    distiller = study.METHODS[model.method].build(student, teacher, model, len(classes), len(train_set))
    fingerprint = _fingerprint({"info": info, "model": as_dict(model.arch), "optim": as_dict(model.optim),
                                "data": as_dict(data), "train_data": _data_identity(train_set, data),
                                "code": codedeps.code_hash(__name__)})
    ctx = distributed.context(resolve_device())
    if ctx.is_main:
        log(f"training {model.key}: {model.arch.arch} (width {model.arch.width}), method {model.method}, "
            f"seed {model.seed}, on {len(train_set)} images, {len(classes)} classes"
            + (f", {ctx.world_size} processes" if ctx.distributed else ""))
    records = fit(distiller, train_set, val_set, model.optim, seed=model.seed,
                  checkpoint_dir=layout.checkpoints(model), fingerprint=fingerprint, device=ctx.device,
                  num_workers=data.num_workers, label=model.key, eval_batch_size=data.eval_batch_size)
    if ctx.is_main:
        info["environment"] = environment_record()
        save_model(distiller.student, layout.model_file(model), model.arch, classes, info=info)
        with atomic_path(layout.history(model)) as tmp:
            pd.DataFrame(records).to_csv(tmp, index=False)
    distributed.barrier(ctx)


def initial_model(model: study.Model, num_classes: int) -> torch.nn.Module:
    """The untrained network of ``model``: ``torch.manual_seed(model.seed)``, then :func:`build_model`.

    Every student of one seed (and that seed's control) starts from these weights.
    """
    torch.manual_seed(model.seed)
    return build_model(model.arch, num_classes)


def write_initial(params: Params, model: study.Model, layout: study.Layout) -> None:
    """Write ``layout.model_file(model)``: the weights every student of ``model.seed`` starts from, untrained.

    Built by :func:`initial_model`, as :func:`train` builds every student, so the control equals the
    initialisation of the students of its seed.

    Raises:
        DataError: the class folders are missing or disagree (their names go into the header).
    """
    classes = class_names(params.data)
    net = initial_model(model, len(classes))
    info = {"name": model.name, "seed": model.seed, "group": model.group.kind, **as_dict(model.recipe),
            "environment": environment_record()}
    save_model(net, layout.model_file(model), model.arch, classes, info=info)
    log(f"{model.key}: wrote the untrained initialisation of seed {model.seed} ({model.arch.arch}, "
        f"width {model.arch.width})")


def _fingerprint(config: dict) -> str:
    """Identity of a training run: a checkpoint is resumed only by a run with the same fingerprint."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def _data_identity(dataset, data) -> str:
    """Hash of the training file list (paths, sizes) and the world description, to detect changed data."""
    digest = hashlib.sha256()
    if data.world_file and Path(data.world_file).is_file():
        digest.update(Path(data.world_file).read_bytes())
    for path, target in dataset.samples:
        digest.update(f"{Path(path).relative_to(data.train_dir)}\t{target}\t{Path(path).stat().st_size}\n".encode())
    return digest.hexdigest()
