"""torchvision ResNets for the study, and weights-only checkpoint files.

The paper distils a torchvision ResNet-34 teacher into a ResNet-18 student (ImageNet, 224 px) and
dissects ``layer4``. On the CPU default (the concept world at 32 px) the same torchvision classes
are used with two adaptations, both named options in ``params.yaml``:

* ``small_input``: a 3x3 stride-2 stem without max-pool (total stride 16 instead of 32), so that
  ``layer4`` keeps a spatial map (4x4 on 64 px probe images).
* ``width``: channels of ``layer1`` (64 in torchvision); ``layer2..4`` are 2x, 4x, 8x that.

With ``width: 64`` and ``small_input: false`` the model *is* ``torchvision.models.resnetXX``.

Checkpoints are untrusted input (they come from remote storage): models are stored as
``safetensors`` with a JSON header describing the architecture, and loaded without unpickling.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from kdinterp.core.config import ParamsError, from_mapping
from kdinterp.core.errors import KdinterpError, NonFiniteError
from kdinterp.core.io import atomic_path
from kdinterp.core.params import ModelParams, Params
from kdinterp.core.study import Model
from kdinterp.training.folders import class_names

__all__ = ["CheckpointError", "WideResNet", "build_model", "check_finite_weights", "load_model", "read_header",
           "load_trained", "save_model", "tensors_sha256"]

_BLOCKS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], list[int]]] = {
    "resnet10": (BasicBlock, [1, 1, 1, 1]),
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
}


class CheckpointError(KdinterpError, ValueError):
    """A model file is missing, malformed, or holds another architecture than expected."""


class WideResNet(ResNet):
    """torchvision's ``ResNet`` with a ``layer1`` width other than 64 and an optional small stem.

    Blocks, forward pass, initialisation and module names (``conv1, bn1, layer1..layer4, fc``)
    are torchvision's, so hooks and state-dict keys match ``torchvision.models.resnet18`` & co.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: blocks per stage, e.g. ``[2, 2, 2, 2]`` for ResNet-18.
        num_classes: size of the ``fc`` output.
        width: channels of ``layer1``; stage ``i`` has ``width * 2**i`` (times the block expansion).
        small_input: replace the 7x7/2 conv + 3x3/2 max-pool stem by one 3x3/2 conv.
    """

    def __init__(self, block: Any, layers: Sequence[int], num_classes: int, width: int, small_input: bool) -> None:
        self._width = width
        super().__init__(block, list(layers), num_classes=num_classes)
        if small_input:
            self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=2, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1 = nn.BatchNorm2d(width)
        self.fc = nn.Linear(8 * width * block.expansion, num_classes)

    def _make_layer(self, block: Any, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        if planes == 64:  # layer1: its input is the stem's output, `width` channels
            self.inplanes = self._width
        return super()._make_layer(block, planes * self._width // 64, blocks, stride, dilate)


def build_model(spec: ModelParams, num_classes: int) -> nn.Module:
    """Build a randomly initialised ResNet.

    Args:
        spec: architecture (``arch``, ``width``, ``small_input``).
        num_classes: number of output logits.

    Returns:
        ``torchvision.models.<arch>(num_classes=...)`` when ``width == 64`` and not
        ``small_input`` (``resnet10`` is built from torchvision's ``ResNet`` class), else a
        :class:`WideResNet`. Input ``(N, 3, H, W)``, output logits ``(N, num_classes)``.
    """
    block, layers = _BLOCKS[spec.arch]
    if spec.width == 64 and not spec.small_input:
        return ResNet(block, layers, num_classes=num_classes)
    return WideResNet(block, layers, num_classes, spec.width, spec.small_input)


def save_model(model: nn.Module, path: str | Path, spec: ModelParams, classes: Sequence[str],
               info: dict[str, Any] | None = None) -> None:
    """Write a model's weights as safetensors, with its architecture in the header.

    Args:
        model: the trained model (its ``state_dict`` is saved; buffers included).
        path: target ``.safetensors`` file, written atomically.
        spec: the architecture it was built from.
        classes: class names in logit order.
        info: extra JSON-serialisable metadata (training method, seed, ...). It holds what determines
            the weights, never the machine (the environment goes to a sidecar file), so that the same
            training on another machine with the same instruction set writes the same bytes.

    The header also records :func:`tensors_sha256` of the weights; :func:`load_model` checks it.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {"model": {"arch": spec.arch, "width": spec.width, "small_input": spec.small_input},
              "classes": list(classes), "info": info or {}, "tensors_sha256": tensors_sha256(state)}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"kdinterp": json.dumps(header, sort_keys=True)})


def tensors_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors of a state dict: each name, dtype, shape and raw bytes, in name order.

    Args:
        state: tensor name -> CPU tensor.
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def read_header(path: str | Path) -> dict[str, Any]:
    """Read the kdinterp header of a model file without loading the weights.

    Raises:
        CheckpointError: the file is missing, not safetensors, or has no kdinterp header, or one that
            is not what :func:`save_model` writes (not JSON; no ``model``/``classes``; bad ``model`` values).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: model file not found (train it first: `dvc repro`)")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{p}: not a safetensors model file ({err})") from err
    if "kdinterp" not in meta:
        raise CheckpointError(f"{p}: safetensors file without a kdinterp header; save it with kdinterp.training.models.save_model")
    return _check_header(p, meta["kdinterp"])


def _check_header(path: Path, text: str) -> dict[str, Any]:
    """The parsed kdinterp header, checked to be what :func:`save_model` writes.

    Raises:
        CheckpointError: not JSON, or not ``{"model": ModelParams, "classes": [str, ...], "info": {...},
            "tensors_sha256": 64 hex digits}``.
    """
    fix = "it was not written by kdinterp.training.models.save_model; retrain it (`dvc repro`) or restore it (`dvc checkout`)"
    try:
        header = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: the kdinterp header is not JSON ({err}); {fix}") from None
    if not isinstance(header, dict) or not isinstance(header.get("model"), dict):
        raise CheckpointError(f"{path}: the kdinterp header has no 'model' mapping; {fix}")
    classes, info = header.get("classes"), header.get("info", {})
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise CheckpointError(f"{path}: the kdinterp header's 'classes' is not a non-empty list of names; {fix}")
    if not isinstance(info, dict):
        raise CheckpointError(f"{path}: the kdinterp header's 'info' is not a mapping; {fix}")
    try:
        spec = from_mapping(ModelParams, header["model"], "model")
    except ParamsError as err:
        raise CheckpointError(f"{path}: kdinterp header: {err}; {fix}") from None
    digest = header.get("tensors_sha256")
    if not isinstance(digest, str) or len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise CheckpointError(f"{path}: the kdinterp header has no 'tensors_sha256' digest of the weights (a corrupted "
                              "or foreign file); restore it with `dvc pull` (or `dvc checkout`), or retrain it with "
                              "`dvc repro` of its train stage")
    return {**header, "model": dataclasses.asdict(spec), "info": info}


def load_model(path: str | Path, expected: ModelParams | None = None,
               num_classes: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model saved by :func:`save_model`, weights only (no unpickling).

    Args:
        path: the ``.safetensors`` file.
        expected: if given, the architecture the caller needs; a different one is refused.
        num_classes: if given, the number of classes the caller needs.

    Returns:
        ``(model, header)``: the model in eval mode on the CPU, and the file's header
        (``model``, ``classes``, ``info``).

    Raises:
        CheckpointError: missing or malformed file (header not what :func:`save_model` writes,
            unreadable weights), another architecture or class count than expected, or weights that
            do not fit the architecture in the header.
        NonFiniteError: a weight is NaN or infinite (the message names the file and the tensor).
    """
    header = read_header(path)
    spec = from_mapping(ModelParams, header["model"], "model")
    classes = header["classes"]
    if expected is not None and spec != expected:
        raise CheckpointError(f"{path}: holds {_describe(spec)}, but {_describe(expected)} is expected "
                              "(params.yaml changed since it was trained? rerun `dvc repro`)")
    if num_classes is not None and len(classes) != num_classes:
        raise CheckpointError(f"{path}: has {len(classes)} classes, but the data set has {num_classes}")
    model = build_model(spec, len(classes))
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: the weights cannot be read ({err}); restore the file (`dvc checkout`) "
                              "or retrain it (`dvc repro`)") from None
    if tensors_sha256(state) != header["tensors_sha256"]:  # present: checked by read_header
        raise CheckpointError(f"{path}: the weights do not match the hash in the file's header (the file is "
                              "corrupted); restore it with `dvc pull` (or `dvc checkout`), or retrain it with "
                              "`dvc repro` of its train stage")
    check_finite_weights(path, state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit {_describe(spec)}: {' '.join(str(err).split())}") from err
    return model.eval(), header


def check_finite_weights(path: str | Path, state: dict[str, torch.Tensor]) -> None:
    """Refuse a state dict (tensor name -> tensor) read from ``path`` that holds a NaN or infinite float.

    Raises:
        NonFiniteError: the message names the file, the first such tensor and its count of bad values.
    """
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise NonFiniteError(f"{path}: weight '{key}' has {bad} NaN or infinite value(s); the model is broken: "
                                 "retrain it (`dvc repro`) from a finite checkpoint")


def _describe(spec: ModelParams) -> str:
    stem = ", small-input stem" if spec.small_input else ""
    return f"{spec.arch} (width {spec.width}{stem})"


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
