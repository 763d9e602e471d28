"""Stages ``train_teacher@``, ``train_student@``, ``distill_student@``, ``self_distill_student@`` and ``init_control@``.

One function trains any model of the study (:func:`train`), or writes a control's weights
(:func:`write_control`): the study contract
(:mod:`kdinterp.core.study`) says which recipe, seed, method and teacher the model has and where its
outputs go; the method table (:mod:`kdinterp.training.methods`) builds its
:class:`~kdinterp.training.distill.Distiller`. The weights file holds what determines the weights
(weights, architecture, recipe, seed); the environment that computed them (CPU, threads, library
versions) goes to a small committed sidecar, ``training/<key>.env.json``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import torch

from kdinterp.core import codedeps, study
from kdinterp.core.io import atomic_path, sha256_file, write_json
from kdinterp.core.params import ControlParams, Params, as_dict
from kdinterp.core.progress import log
from kdinterp.core.runtime import configure_torch, environment_record, resolve_device
from kdinterp.training import distributed, methods
from kdinterp.training.batchnorm import recalibrate_on_training_images
from kdinterp.training.data import load_dataset, shuffle_labels
from kdinterp.training.folders import class_names
from kdinterp.training.models import CheckpointError, build_model, check_finite_weights, load_trained, save_model
from kdinterp.training.train import fit, read_snapshots

__all__ = ["import_weights", "initial_model", "read_state_dict", "train", "write_control", "write_snapshots"]


def train(params: Params, model: study.Model, layout: study.Layout) -> None:
    """Train ``model`` from scratch (or resume its checkpoint) and write its outputs.

    A control (``model.group.trained`` False) is not trained: only its weights are written
    (:func:`write_control`). A teacher with ``weights`` (:attr:`kdinterp.core.study.Model.imported`) is
    not trained either: its file is imported (:func:`import_weights`).

    Writes ``layout.model_file(model)`` (weights + header with the recipe and seed),
    ``layout.environment(model)`` (:func:`write_environment`), ``layout.history(model)`` (per-epoch
    CSV), every epoch ``layout.checkpoints(model)/last.pt``, and for a student trained from labels
    (``model.group.snapshots``) ``layout.snapshots(model)`` (:func:`write_snapshots`). A student of
    ``shuffle_labels`` trains on :func:`kdinterp.training.data.shuffle_labels` of the training set.
    The seed fixes the initialisation (``torch.manual_seed(seed)`` right before the model is
    built) and, through :func:`kdinterp.training.train.fit`, the data order and augmentation: students of
    one seed start from the same weights and see the same batches.

    Raises:
        CheckpointError: the teacher file is missing or does not match its params; an imported
            weights file is missing or does not fit the architecture.
        DataError: the data set is missing or inconsistent.
        NonFiniteLossError: the loss became NaN or infinite.
    """
    configure_torch()
    if not model.group.trained:
        write_control(params, model, layout)
        return
    if model.imported:
        import_weights(params, model, layout)
        return
    data = params.data
    teacher, info = None, {"name": model.name, "seed": model.seed, "group": model.group.kind,
                           "method": model.method, **as_dict(model.recipe)}
    if model.teacher is not None:
        teacher_path = layout.model_file(model.teacher)
        teacher, _, _ = load_trained(params, model.teacher, teacher_path)
        info["teacher_sha256"] = sha256_file(teacher_path)
    train_set = load_dataset(data, train=True)
    if getattr(model.recipe, "shuffle_labels", False):
        train_set = shuffle_labels(train_set, model.seed)
    val_set = load_dataset(data, train=False)
    snapshot_epochs = params.student_recipe.snapshot_epochs if model.group.snapshots else ()
    classes = list(train_set.classes)
    student = initial_model(model, len(classes))
    distiller = methods.build(model.method, student, teacher, model.recipe, len(classes), len(train_set),
                              where=f"{model.group.section}.{model.name}.options")
    fingerprint = _fingerprint({"info": info, "model": as_dict(model.arch), "optim": as_dict(model.optim),
                                "data": as_dict(data), "train_data": _data_identity(train_set, data),
                                "snapshot_epochs": list(snapshot_epochs), "code": codedeps.code_hash(__name__)})
    ctx = distributed.context(resolve_device())
    if ctx.is_main:
        log(f"training {model.key}: {model.arch.arch} (width {model.arch.width}), method {model.method}, "
            f"seed {model.seed}, on {len(train_set)} images, {len(classes)} classes"
            + (f", {ctx.world_size} processes" if ctx.distributed else ""))
    records = fit(distiller, train_set, val_set, model.optim, seed=model.seed,
                  checkpoint_dir=layout.checkpoints(model), fingerprint=fingerprint, device=ctx.device,
                  num_workers=data.num_workers, label=model.key, eval_batch_size=data.eval_batch_size,
                  snapshot_epochs=snapshot_epochs)
    if ctx.is_main:
        save_model(distiller.student, layout.model_file(model), model.arch, classes, info=info)
        if model.group.snapshots:
            write_snapshots(model, layout, classes, info,
                            read_snapshots(layout.checkpoints(model), fingerprint, snapshot_epochs))
        write_environment(layout, model)
        with atomic_path(layout.history(model)) as tmp:
            pd.DataFrame(records).to_csv(tmp, index=False)
    distributed.barrier(ctx)


def write_environment(layout: study.Layout, model: study.Model) -> None:
    """Write ``layout.environment(model)``: the environment that computed the weights
    (:func:`kdinterp.core.runtime.environment_record`: CPU model and ISA flags, threads, library
    versions, the pinned numerical variables), as key-sorted JSON. A fresh clone that retrains on
    another machine changes only these sidecars when the weights come out the same."""
    write_json(layout.environment(model), environment_record())


def initial_model(model: study.Model, num_classes: int) -> torch.nn.Module:
    """The untrained network of ``model``: ``torch.manual_seed(model.seed)``, then :func:`build_model`.

    Every student of one seed (and that seed's control) starts from these weights.
    """
    torch.manual_seed(model.seed)
    return build_model(model.arch, num_classes)


def write_snapshots(model: study.Model, layout: study.Layout, classes: list[str], info: dict,
                    snapshots: dict[int, dict[str, torch.Tensor]]) -> None:
    """Write the folder ``layout.snapshots(model)`` (a DVC output, so created even with no snapshot):
    ``layout.snapshot(model, e)`` for each epoch ``e`` of ``snapshots``, a model file whose header is the
    student's (``info``) plus ``epoch``; files of other epochs there are removed.

    Args:
        model: the student.
        layout: the output layout.
        classes: class names in logit order.
        info: the student's header info.
        snapshots: epoch -> the student's ``state_dict`` after it (:func:`kdinterp.training.train.read_snapshots`).
    """
    folder = layout.snapshots(model)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {layout.snapshot(model, epoch) for epoch in snapshots}
    for stale in folder.glob("epoch-*.safetensors"):
        if stale not in wanted:
            stale.unlink()
    for epoch, state in sorted(snapshots.items()):
        net = build_model(model.arch, len(classes))
        net.load_state_dict(state, strict=True)
        save_model(net, layout.snapshot(model, epoch), model.arch, classes, info={**info, "epoch": epoch})


def write_control(params: Params, model: study.Model, layout: study.Layout) -> None:
    """Write ``layout.model_file(model)`` for a control (:class:`kdinterp.core.params.ControlParams`), untrained.

    The weights: ``init: random``, those every student of ``model.seed`` starts from
    (:func:`initial_model`, as :func:`train` builds every student); ``init: snapshot``, the snapshot
    ``layout.snapshot(model.source, epoch)`` of the source student, written by its train stage. Then,
    for ``batchnorm: recalibrated``, the BatchNorm running statistics are recomputed on the training
    images (:func:`kdinterp.training.batchnorm.recalibrate_on_training_images`, on the auto device).
    The header holds the control's name, seed, group and params entry, plus ``snapshot_sha256`` for a
    snapshot.

    Raises:
        DataError: the class folders are missing or disagree (their names go into the header).
        CheckpointError: the snapshot file is missing, of another architecture, seed or classes, or
            not of that student and epoch (the message names the stage to rerun).
    """
    spec = model.recipe
    if not isinstance(spec, ControlParams):
        raise TypeError(f"{model.key} is not a control ({model.group.section})")
    classes = class_names(params.data)
    info = {"name": model.name, "seed": model.seed, "group": model.group.kind, **as_dict(spec)}
    if model.source is None:
        net = initial_model(model, len(classes))
        what = f"the untrained initialisation of seed {model.seed}"
    else:
        path = layout.snapshot(model.source, spec.epoch)
        if not path.is_file():
            raise CheckpointError(f"{path}: snapshot not found; run stage {model.source.stage('train')} (it writes "
                                  f"student_recipe.snapshot_epochs) before {model.stage('train')}")
        net, header, _ = load_trained(params, model.source, path)
        found, wanted = (header["info"].get("name"), header["info"].get("epoch")), (model.source.name, spec.epoch)
        if found != wanted:
            raise CheckpointError(f"{path}: holds {found[0]} after epoch {found[1]}, not {wanted[0]} after epoch "
                                  f"{wanted[1]}; rerun stage {model.source.stage('train')}")
        info["snapshot_sha256"] = sha256_file(path)
        what = f"{model.source.key} after epoch {spec.epoch}"
    if spec.batchnorm == "recalibrated":
        seen = recalibrate_on_training_images(net, params.data, resolve_device())
        net.cpu()
        what += f", BatchNorm statistics recalibrated on {seen} training images"
    save_model(net, layout.model_file(model), model.arch, classes, info=info)
    write_environment(layout, model)
    log(f"{model.key}: wrote {what} ({model.arch.arch}, width {model.arch.width})")


def import_weights(params: Params, model: study.Model, layout: study.Layout) -> None:
    """Write ``layout.model_file(model)`` from the user-provided file ``teachers.<name>.weights`` (no training).

    The file is a torchvision ``state_dict`` (e.g. ``resnet34-b627a593.pth``, the paper's
    teacher), read weights-only (:func:`read_state_dict`: checkpoints are untrusted), and loaded
    strictly into ``build_model(model.arch, len(classes))``, i.e. ``torchvision.models.resnet34``
    for ``width: 64, small_input: false`` (BatchNorm's ``num_batches_tracked``, absent from files
    saved before PyTorch 0.4.1, is set to 0). ``classes`` are the train ImageFolder's sorted folder
    names, the logit order of torchvision's ImageNet weights (sorted WordNet ids). The output has
    the header of a trained model (name, seed, group, recipe) plus ``method:
    imported`` and ``weights_sha256``, so distillation, evaluation and dissection read it unchanged;
    ``layout.history(model)`` is written with no epochs (dvc.yaml declares it for every teacher).

    Raises:
        CheckpointError: the file is missing or unreadable, or its tensors do not match the
            architecture (names or shapes); the message names the param and the fix.
        DataError: the class folders are missing or disagree.
        NonFiniteError: a tensor of the file is NaN or infinite (nothing is written).
    """
    key = f"teachers.{model.name}.weights"
    path = Path(model.recipe.weights)  # type: ignore[union-attr]  (imported: a teacher with weights)
    classes = class_names(params.data)
    net = build_model(model.arch, len(classes))
    state = read_state_dict(path, key)
    for name in net.state_dict():  # files saved before PyTorch 0.4.1 (resnet34-b627a593.pth) lack this buffer;
        if name.endswith("num_batches_tracked") and name not in state:  # BatchNorm itself loads them as 0
            state[name] = torch.zeros((), dtype=torch.long)
    expected = {name: tuple(t.shape) for name, t in net.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state.items()}
    wrong = sorted(n for n in expected.keys() & found.keys() if expected[n] != found[n])
    missing, extra = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    if wrong or missing or extra:
        detail = "; ".join(part for part in (
            f"shapes differ for {', '.join(f'{n} {found[n]} vs {expected[n]}' for n in wrong[:3])}" if wrong else "",
            f"missing {', '.join(missing[:3])}" if missing else "", f"unexpected {', '.join(extra[:3])}" if extra else "")
            if part)
        raise CheckpointError(f"{key}: {path} does not fit {model.arch.arch} (width {model.arch.width}, "
                              f"small_input {model.arch.small_input}) with {len(classes)} classes ({detail}); give a "
                              f"torchvision {model.arch.arch} state_dict for {len(classes)} classes, or fix "
                              f"teachers.{model.name}.model")
    check_finite_weights(path, state)
    net.load_state_dict(state, strict=True)
    info = {"name": model.name, "seed": model.seed, "group": model.group.kind, "method": "imported",
            **as_dict(model.recipe), "weights_sha256": sha256_file(path)}
    save_model(net, layout.model_file(model), model.arch, classes, info=info)
    write_environment(layout, model)
    with atomic_path(layout.history(model)) as tmp:
        tmp.write_text("epoch,val_top1\n", encoding="utf-8")  # imported: no training epochs
    log(f"{model.key}: imported {path} ({model.arch.arch}, width {model.arch.width}, {len(classes)} classes)")


def read_state_dict(path: Path, key: str) -> dict[str, torch.Tensor]:
    """Read a ``state_dict`` file weights-only: ``.safetensors``, else ``torch.load(weights_only=True)``.

    Args:
        path: the file.
        key: the param that names it, for messages.

    Returns:
        Tensor name -> tensor (CPU).

    Raises:
        CheckpointError: the file is missing, cannot be read weights-only, or is not a flat mapping
            of names to tensors.
    """
    if not path.is_file():
        raise CheckpointError(f"{key}: {path} not found; put the torchvision weights file there "
                              f"(e.g. resnet34-b627a593.pth, no download is attempted) or fix {key}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  any unreadable or unsafe file: one message, no traceback
        raise CheckpointError(f"{key}: {path} is not a weights-only state_dict file ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}); give a torchvision .pth or a "
                              ".safetensors file") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{key}: {path} holds a {type(state).__name__}, not a state_dict (names -> tensors); "
                              "save model.state_dict(), not a training checkpoint")
    return state


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
