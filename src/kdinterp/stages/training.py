"""Stages ``train_teacher@``, ``train_student@`` and ``distill_student@``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import torch

import kdinterp
from kdinterp.data import build_transform, class_names, image_folder, make_loader
from kdinterp.distill import Distiller, LogitKD, Vanilla
from kdinterp.io import atomic_path
from kdinterp.models import build_model, save_model
from kdinterp.params import ModelParams, OptimParams, Params, as_dict
from kdinterp.progress import log
from kdinterp.stages.common import load_trained, resolve_device, sha256_file
from kdinterp.train import fit

__all__ = ["TRAINING_CODE", "distill_student", "train_student", "train_teacher"]

#: Modules whose code defines a training run (relative to the package; the same files are the
#: training stages' deps in dvc.yaml).
TRAINING_CODE = ("data.py", "distill.py", "losses.py", "models.py", "train.py", "stages/training.py")


def train_teacher(params: Params, name: str, out: Path, checkpoints: Path, history: Path) -> None:
    """Stage ``train_teacher@<name>``: cross-entropy (with the teacher's label smoothing) from scratch."""
    spec = params.teachers[name]
    _train(params, name, spec.model, spec.optim, lambda model: Vanilla(model, spec.label_smoothing),
           {"role": "teacher", **as_dict(spec)}, out, checkpoints, history)


def train_student(params: Params, name: str, out: Path, checkpoints: Path, history: Path) -> None:
    """Stage ``train_student@<name>``: a student trained from labels (f_scratch, f_LS)."""
    spec = params.students[name]
    _train(params, name, params.student_recipe.model, params.student_recipe.optim,
           lambda model: Vanilla(model, spec.label_smoothing),
           {"role": "student", **as_dict(spec)}, out, checkpoints, history)


def distill_student(params: Params, name: str, teacher_path: Path, out: Path, checkpoints: Path, history: Path) -> None:
    """Stage ``distill_student@<name>``: a student trained from a teacher's logits (f_KD)."""
    spec = params.distilled[name]
    teacher, _, _ = load_trained(params, spec.teacher, teacher_path)
    _train(params, name, params.student_recipe.model, params.student_recipe.optim,
           lambda model: LogitKD(model, teacher, spec.temperature, spec.alpha),
           {"role": "distilled", "teacher_sha256": sha256_file(teacher_path), **as_dict(spec)},
           out, checkpoints, history)


def _train(params: Params, name: str, model: ModelParams, optim: OptimParams, make_distiller,
           config: dict, out: Path, checkpoints: Path, history: Path) -> None:
    data = params.data
    classes = class_names(data)
    train_set = image_folder(data.train_dir, build_transform(data, train=True))
    val_set = image_folder(data.val_dir, build_transform(data, train=False))
    val_loader = make_loader(val_set, data.eval_batch_size, shuffle=False, num_workers=data.num_workers)
    torch.manual_seed(params.seed)
    distiller: Distiller = make_distiller(build_model(model, len(classes)))
    fingerprint = _fingerprint({"name": name, "seed": params.seed, "model": as_dict(model), "optim": as_dict(optim),
                                "data": as_dict(data), "config": config, "train_data": _data_identity(train_set, data),
                                "code": _code_identity()})
    log(f"training {name}: {model.arch} (width {model.width}) on {len(train_set)} images, {len(classes)} classes")
    records = fit(distiller, train_set, val_loader, optim, seed=params.seed, checkpoint_dir=checkpoints,
                  fingerprint=fingerprint, device=resolve_device(), num_workers=data.num_workers, label=name)
    save_model(distiller.student, out, model, classes, info={"name": name, "seed": params.seed, **config})
    with atomic_path(history) as tmp:
        pd.DataFrame(records).to_csv(tmp, index=False)


def _fingerprint(config: dict) -> str:
    """Identity of a training run: a checkpoint is resumed only by a run with the same fingerprint."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def _code_identity() -> str:
    """Hash of the modules that define training (the stage's ``src`` deps in dvc.yaml).

    DVC reruns a training stage when these change; the hash keeps that rerun from resuming a
    checkpoint written by the old code.
    """
    package = Path(kdinterp.__file__).parent
    digest = hashlib.sha256()
    for module in TRAINING_CODE:
        digest.update(module.encode() + b"\0" + (package / module).read_bytes())
    return digest.hexdigest()


def _data_identity(dataset, data) -> str:
    """Hash of the training file list (paths, sizes) and the world description, to detect changed data."""
    digest = hashlib.sha256()
    if data.world_file and Path(data.world_file).is_file():
        digest.update(Path(data.world_file).read_bytes())
    for path, target in dataset.samples:
        digest.update(f"{Path(path).relative_to(data.train_dir)}\t{target}\t{Path(path).stat().st_size}\n".encode())
    return digest.hexdigest()


