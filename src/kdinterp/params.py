"""Typed, frozen views of ``params.yaml``.

Nothing else in the package reads ``params.yaml``: the CLI loads it here and passes the sections
down. Unknown or renamed keys fail loudly (see :mod:`kdinterp.config`). The meaning of every
value is documented next to it in ``params.yaml``; this module states types, ranges and
cross-references.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from kdinterp.config import ParamsError, from_mapping
from kdinterp.world.params import WorldParams

__all__ = [
    "CATEGORIES",
    "DataParams",
    "DissectionParams",
    "DistilledParams",
    "ModelParams",
    "OptimParams",
    "Params",
    "ParamsError",
    "StudentParams",
    "StudentRecipe",
    "TeacherParams",
    "load_params",
]

#: Broden's six concept categories, in the order the paper lists them.
CATEGORIES: tuple[str, ...] = ("object", "part", "scene", "material", "texture", "color")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ParamsError(message)


@dataclass(frozen=True)
class ModelParams:
    """A torchvision ResNet, optionally narrowed and with a stem for small images."""

    arch: Literal["resnet10", "resnet18", "resnet34", "resnet50"]
    width: int = 64
    small_input: bool = False

    def __post_init__(self) -> None:
        _check(self.width >= 4 and self.width % 4 == 0, f"width must be a positive multiple of 4, got {self.width}")


@dataclass(frozen=True)
class OptimParams:
    """SGD with momentum and a learning-rate schedule stepped once per epoch; ``batch_size`` is global.

    ``amp_bf16`` (bf16 autocast) and ``channels_last`` apply on CUDA only; on the CPU they are ignored.
    """

    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "multistep", "constant"] = "cosine"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    amp_bf16: bool = False
    channels_last: bool = False

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _check(self.schedule != "multistep" or bool(self.milestones), "schedule 'multistep' needs milestones")


@dataclass(frozen=True)
class DataParams:
    """The classification data set (ImageFolder layout) and its loader."""

    train_dir: str
    val_dir: str
    image_size: int
    augment: Literal["crop_flip", "imagenet"]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    world_file: str | None = None
    num_workers: int = 0
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        _check(self.image_size >= 8, f"image_size must be >= 8, got {self.image_size}")
        _check(all(s > 0 for s in self.std), f"std must be positive, got {self.std}")
        _check(self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}")


@dataclass(frozen=True)
class TeacherParams:
    """A teacher: its architecture, its recipe, and the label smoothing it is trained with."""

    model: ModelParams
    optim: OptimParams
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        _check(0.0 <= self.label_smoothing < 1.0, f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


@dataclass(frozen=True)
class StudentRecipe:
    """Architecture and recipe shared by every student, so students differ only in supervision."""

    model: ModelParams
    optim: OptimParams


@dataclass(frozen=True)
class StudentParams:
    """A student trained from the labels alone: cross-entropy with label smoothing epsilon."""

    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        _check(0.0 <= self.label_smoothing < 1.0, f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


@dataclass(frozen=True)
class DistilledParams:
    """A student trained from a teacher: logit KD (Hinton) or a feature-based method.

    ``alpha`` is the paper's alpha, the weight of the logit-distillation term:
    ``(1 - alpha) * CE(y, softmax(z_s)) + alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T))``,
    plus the method's feature term for ``at``, ``ft``, ``crd`` and ``sskd`` (``alpha = 0``: the
    feature method without logit distillation). torchdistill's ``alpha`` is the other weight.
    ``teacher`` names a teacher or a student trained from labels (a student of the same
    architecture as teacher: self-distillation). ``options`` holds the feature method's settings,
    validated by :func:`kdinterp.feature_kd.build_feature_distiller`.
    """

    teacher: str
    method: Literal["kd", "at", "ft", "crd", "sskd"] = "kd"
    temperature: float = 4.0
    alpha: float = 0.5
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        _check(0.0 <= self.alpha <= 1.0, f"alpha must be in [0, 1], got {self.alpha}")
        _check(self.method != "kd" or not self.options, "method 'kd' takes no options")


@dataclass(frozen=True)
class DissectionParams:
    """Network Dissection of one layer on a Broden-layout probe set (NetDissect-Lite semantics).

    ``quantile_convention`` (:func:`kdinterp.dissection.thresholds.quantile_level`): ``exact``
    thresholds at level ``1 - quantile``, ``lite`` at NetDissect-Lite's ``994/999`` for 0.005.
    ``activation_rule`` (:mod:`kdinterp.dissection.tally`): a unit's active pixels in an image count
    toward category c, with ``lite``, if some of them lie on a label of c or the image has an
    image-level label of c; with ``netdissect``, if c is present anywhere in the image.
    ``top_images``: top-activating probe images kept per unit (``top_images.npz``).
    """

    broden_dir: str
    layer: str = "layer4"
    quantile: float = 0.005
    iou_threshold: float = 0.05
    categories: tuple[str, ...] = CATEGORIES
    batch_size: int = 64
    device: Literal["auto", "cpu", "cuda"] = "auto"
    quantile_convention: Literal["exact", "lite"] = "exact"
    activation_rule: Literal["lite", "netdissect"] = "lite"
    top_images: int = 8

    def __post_init__(self) -> None:
        _check(0.0 < self.quantile < 0.5, f"quantile must be in (0, 0.5), got {self.quantile}")
        _check(self.top_images >= 1, f"top_images must be >= 1, got {self.top_images}")
        _check(0.0 < self.iou_threshold <= 1.0, f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        unknown = sorted(set(self.categories) - set(CATEGORIES))
        _check(not unknown, f"categories: unknown {unknown}; Broden has {list(CATEGORIES)}")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class Params:
    """All of ``params.yaml``."""

    seed: int
    world: WorldParams
    data: DataParams
    teachers: dict[str, TeacherParams]
    student_recipe: StudentRecipe
    students: dict[str, StudentParams]
    distilled: dict[str, DistilledParams]
    dissection: DissectionParams
    paper_models: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        groups = {"teachers": self.teachers, "students": self.students, "distilled": self.distilled}
        seen: dict[str, str] = {}
        for group, models in groups.items():
            for name in models:
                _check(name not in seen, f"model name '{name}' is used in both '{seen.get(name)}' and '{group}'")
                _check(name.isidentifier(), f"{group}.{name}: model names must be identifiers (letters, digits, _)")
                seen[name] = group
        for name, spec in self.distilled.items():
            _check(spec.teacher in self.teachers or spec.teacher in self.students,
                   f"distilled.{name}.teacher: '{spec.teacher}' is not one of teachers or students: "
                   f"{sorted([*self.teachers, *self.students])}")
        for role, name in self.paper_models.items():
            _check(name in seen, f"paper_models.{role}: '{name}' is not a model defined in params.yaml")

    @property
    def model_names(self) -> list[str]:
        """Every model the pipeline trains: teachers, then students, then distilled students."""
        return [*self.teachers, *self.students, *self.distilled]


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``.

    Args:
        path: the parameter file.

    Returns:
        The validated :class:`Params`.

    Raises:
        FileNotFoundError: the file does not exist.
        ParamsError: a key is unknown, missing or of the wrong type, or a cross-reference is broken;
            the message names the file and the dotted key.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: parameter file not found (run from the repository root)")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ParamsError(f"{p}: not valid YAML: {err}") from err
    try:
        return from_mapping(Params, raw, "")
    except ParamsError as err:
        raise ParamsError(f"{p}: {err}") from None


def as_dict(section: object) -> dict:
    """A params dataclass as a plain dict (for metadata files and fingerprints)."""
    return dataclasses.asdict(section)  # type: ignore[arg-type]
