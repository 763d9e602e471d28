"""Stages ``train_teacher@``, ``train_student@`` and ``distill_student@``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import torch
from torch import nn

import kdinterp
from kdinterp import distributed
from kdinterp.data import build_transform, class_names, image_folder, make_loader
from kdinterp.distill import Distiller, LogitKD, Vanilla
from kdinterp.io import atomic_path
from kdinterp.models import build_model, save_model
from kdinterp.params import ModelParams, OptimParams, Params, as_dict
from kdinterp.progress import log
from kdinterp.stages.common import load_trained, resolve_device, sha256_file
from kdinterp.train import fit

__all__ = ["DISTILLATION_CODE", "TRAINING_CODE", "distill_student", "train_student", "train_teacher"]

#: Modules whose code defines a training run (relative to the package; the same files are the
#: training stages' deps in dvc.yaml). Distilled students also depend on the feature methods.
TRAINING_CODE = ("data.py", "distill.py", "losses.py", "models.py", "train.py", "stages/training.py")
DISTILLATION_CODE = (*TRAINING_CODE, "feature_kd")


def train_teacher(params: Params, name: str, out: Path, checkpoints: Path, history: Path) -> None:
    """Stage ``train_teacher@<name>``: cross-entropy (with the teacher's label smoothing) from scratch."""
    spec = params.teachers[name]
    _train(params, name, spec.model, spec.optim, lambda model, _: Vanilla(model, spec.label_smoothing),
           {"role": "teacher", **as_dict(spec)}, out, checkpoints, history, TRAINING_CODE)


def train_student(params: Params, name: str, out: Path, checkpoints: Path, history: Path) -> None:
    """Stage ``train_student@<name>``: a student trained from labels (f_scratch, f_LS)."""
    spec = params.students[name]
    _train(params, name, params.student_recipe.model, params.student_recipe.optim,
           lambda model, _: Vanilla(model, spec.label_smoothing),
           {"role": "student", **as_dict(spec)}, out, checkpoints, history, TRAINING_CODE)


def distill_student(params: Params, name: str, teacher_path: Path, out: Path, checkpoints: Path, history: Path) -> None:
    """Stage ``distill_student@<name>``: a student trained from a teacher (f_KD, feature KD, self-KD)."""
    spec = params.distilled[name]
    teacher, _, classes = load_trained(params, spec.teacher, teacher_path)

    def make_distiller(model: nn.Module, num_samples: int) -> Distiller:
        if spec.method == "kd":
            return LogitKD(model, teacher, spec.temperature, spec.alpha)
        from kdinterp.feature_kd import build_feature_distiller

        return build_feature_distiller(spec.method, model, teacher, temperature=spec.temperature, alpha=spec.alpha,
                                       options=spec.options, num_classes=len(classes), num_samples=num_samples)

    _train(params, name, params.student_recipe.model, params.student_recipe.optim, make_distiller,
           {"role": "distilled", "teacher_sha256": sha256_file(teacher_path), **as_dict(spec)},
           out, checkpoints, history, DISTILLATION_CODE)


def _train(params: Params, name: str, model: ModelParams, optim: OptimParams, make_distiller,
           config: dict, out: Path, checkpoints: Path, history: Path, code: tuple[str, ...]) -> None:
    data = params.data
    classes = class_names(data)
    train_set = image_folder(data.train_dir, build_transform(data, train=True))
    val_set = image_folder(data.val_dir, build_transform(data, train=False))
    val_loader = make_loader(val_set, data.eval_batch_size, shuffle=False, num_workers=data.num_workers)
    torch.manual_seed(params.seed)
    distiller: Distiller = make_distiller(build_model(model, len(classes)), len(train_set))
    fingerprint = _fingerprint({"name": name, "seed": params.seed, "model": as_dict(model), "optim": as_dict(optim),
                                "data": as_dict(data), "config": config, "train_data": _data_identity(train_set, data),
                                "code": _code_identity(code)})
    ctx = distributed.context(resolve_device())
    if ctx.is_main:
        log(f"training {name}: {model.arch} (width {model.width}) on {len(train_set)} images, {len(classes)} classes"
            + (f", {ctx.world_size} processes" if ctx.distributed else ""))
    records = fit(distiller, train_set, val_loader, optim, seed=params.seed, checkpoint_dir=checkpoints,
                  fingerprint=fingerprint, device=ctx.device, num_workers=data.num_workers, label=name)
    if ctx.is_main:
        save_model(distiller.student, out, model, classes, info={"name": name, "seed": params.seed, **config})
        with atomic_path(history) as tmp:
            pd.DataFrame(records).to_csv(tmp, index=False)
    distributed.barrier(ctx)


def _fingerprint(config: dict) -> str:
    """Identity of a training run: a checkpoint is resumed only by a run with the same fingerprint."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def _code_identity(modules: tuple[str, ...]) -> str:
    """Hash of the modules that define training (the stage's ``src`` deps in dvc.yaml).

    DVC reruns a training stage when these change; the hash keeps that rerun from resuming a
    checkpoint written by the old code.
    """
    package = Path(kdinterp.__file__).parent
    digest = hashlib.sha256()
    for module in modules:
        path = package / module
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(str(file.relative_to(package)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def _data_identity(dataset, data) -> str:
    """Hash of the training file list (paths, sizes) and the world description, to detect changed data."""
    digest = hashlib.sha256()
    if data.world_file and Path(data.world_file).is_file():
        digest.update(Path(data.world_file).read_bytes())
    for path, target in dataset.samples:
        digest.update(f"{Path(path).relative_to(data.train_dir)}\t{target}\t{Path(path).stat().st_size}\n".encode())
    return digest.hexdigest()


