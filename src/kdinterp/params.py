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

__all__ = [
    "ATTRIBUTION_METHODS",
    "CATEGORIES",
    "ControlParams",
    "DataParams",
    "DiffROARParams",
    "DissectionParams",
    "DistilledParams",
    "ModelParams",
    "OptimParams",
    "Params",
    "ParamsError",
    "SensitivityParams",
    "StudentParams",
    "StudentRecipe",
    "TeacherParams",
    "WorldParams",
    "load_params",
]

#: Broden's six concept categories, in the order the paper lists them.
CATEGORIES: tuple[str, ...] = ("object", "part", "scene", "material", "texture", "color")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ParamsError(message)


@dataclass(frozen=True)
class WorldParams:
    """How the concept world is generated; recorded verbatim in ``world.json``.

    Checked here: types and ranges. Checked by :mod:`kdinterp.world.params` when a world is
    generated: ``object_types`` and ``subtypes_per_type`` against the vocabulary.

    Sizes are in pixels (square images); counts are numbers of images; probabilities and
    fractions are in [0, 1].
    """

    seed: int = 0
    image_size: int = 32
    probe_image_size: int = 64
    train_per_class: int = 200
    val_per_class: int = 50
    probe_images: int = 1500
    object_types: int = 8  # object types that become classes: the first N of the vocabulary
    subtypes_per_type: int = 3  # classes per object type: its first N subtypes
    context: float = 0.8  # P(the background is one of the object type's usual scenes); else any scene
    distractor_prob: float = 0.3  # P(a smaller object of another type is drawn behind the class object)
    occlusion_prob: float = 0.2  # P(a small object of another type partly occludes the class object)
    object_scale: tuple[float, float] = (0.5, 0.85)  # object span in classification images, share of the side
    max_rotation: float = 15.0  # objects are rotated uniformly in +-max_rotation degrees
    subtype_similarity: float = 0.0  # 0: subtypes as designed; 1: a type's subtypes look identical
    color_jitter: float = 0.15  # max relative change of brightness, contrast and saturation per image
    noise: float = 0.03  # std of Gaussian pixel noise, as a share of 255
    texture_fraction: float = 0.2  # share of probe images that are texture tiles
    closeup_fraction: float = 0.4  # share of probe images that are object close-ups (the rest are scenes)
    max_probe_objects: int = 3  # probe scenes hold 1..max_probe_objects objects
    supersample: int = 2  # render at N x the size, then average N x N blocks (anti-aliasing)

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ParamsError(f"seed must be >= 0, got {self.seed}")
        for name in ("image_size", "probe_image_size"):
            if getattr(self, name) < 16:
                raise ParamsError(f"{name} must be >= 16 pixels, got {getattr(self, name)}")
        for name in ("train_per_class", "val_per_class", "probe_images", "max_probe_objects", "supersample"):
            if getattr(self, name) < 1:
                raise ParamsError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("context", "distractor_prob", "occlusion_prob", "subtype_similarity", "color_jitter",
                     "noise", "texture_fraction", "closeup_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ParamsError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        self._check_geometry()

    def _check_geometry(self) -> None:
        low, high = self.object_scale
        if not 0.1 <= low <= high <= 1.0:
            raise ParamsError(f"object_scale must be [low, high] with 0.1 <= low <= high <= 1, got {self.object_scale}")
        if not 0.0 <= self.max_rotation <= 180.0:
            raise ParamsError(f"max_rotation must be in [0, 180] degrees, got {self.max_rotation}")
        if self.texture_fraction + self.closeup_fraction >= 1.0:
            raise ParamsError(f"texture_fraction + closeup_fraction must be < 1 (the probe set needs scene images), "
                              f"got {self.texture_fraction} + {self.closeup_fraction}")


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
    """A teacher: its architecture, its recipe, the label smoothing it is trained with, and its seed.

    A teacher is one model per teacher seed (the paper distils from one pretrained teacher); the
    students' ``seeds`` do not multiply it.

    ``weights``: a user-provided torchvision ``state_dict`` file (``.pth``/``.pt`` read with
    ``torch.load(weights_only=True)``, or ``.safetensors``) to import instead of training, e.g.
    ``pretrained/resnet34-b627a593.pth`` for the paper's teacher; it must lie in
    :data:`kdinterp.study.PRETRAINED_DIR` (checked by :func:`kdinterp.study.check`). None: train
    the teacher with ``optim`` and ``label_smoothing`` (both unused when ``weights`` is set).
    """

    model: ModelParams
    optim: OptimParams
    label_smoothing: float = 0.0
    seed: int = 0
    weights: str | None = None

    def __post_init__(self) -> None:
        _check(0.0 <= self.label_smoothing < 1.0, f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        _check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        _check(self.weights is None or bool(self.weights.strip()),
               "weights must be a file path or null (null: train the teacher)")


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
    ``teacher`` names a teacher (section ``distilled``) or, for self-distillation (section
    ``self_distilled``), a student trained from labels, taken at the same seed. ``method`` is a key
    of :data:`kdinterp.study.METHODS`; ``options`` holds its settings, validated there.
    """

    teacher: str
    method: str = "kd"
    temperature: float = 4.0
    alpha: float = 0.5
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        _check(0.0 <= self.alpha <= 1.0, f"alpha must be in [0, 1], got {self.alpha}")


@dataclass(frozen=True)
class ControlParams:
    """A control model: the student recipe's architecture at a seed's initialisation, never trained.

    ``init``: ``random``, the only kind: the weights every student of that seed starts from
    (``torch.manual_seed(seed)`` before the model is built), so its dissection is the floor that
    training raises (Bau et al., CVPR 2017, §3.2, dissect randomly initialised networks the same way).
    """

    init: Literal["random"] = "random"


@dataclass(frozen=True)
class SensitivityParams:
    """What the dissect stage adds to the main tally (``sensitivity.csv`` and the summary's ``probe_bootstrap``).

    ``quantiles``: further tallies at these threshold quantiles (the main ``dissection.quantile`` is
    always tallied). ``iou_thresholds``: the grid at which every tally's detectors are counted.
    ``rotation_seed``: the rotated-basis control (Bau et al. 2017 §3.2), the layer output times a
    random orthogonal matrix drawn with this seed, tallied at the main quantile; null: off.
    ``bootstrap_replicates`` resamplings of ``bootstrap_blocks`` blocks of probe images for the
    probe bootstrap of the detector count.
    """

    quantiles: tuple[float, ...] = (0.0025, 0.005, 0.01)
    iou_thresholds: tuple[float, ...] = (0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10)
    rotation_seed: int | None = 0
    bootstrap_replicates: int = 1000
    bootstrap_blocks: int = 20

    def __post_init__(self) -> None:
        _check(all(0.0 < q < 0.5 for q in self.quantiles), f"quantiles must be in (0, 0.5), got {self.quantiles}")
        _check(bool(self.iou_thresholds) and all(0.0 < t <= 1.0 for t in self.iou_thresholds),
               f"iou_thresholds must be a non-empty list in (0, 1], got {self.iou_thresholds}")
        _check(self.bootstrap_replicates >= 2, f"bootstrap_replicates must be >= 2, got {self.bootstrap_replicates}")
        _check(self.bootstrap_blocks >= 2, f"bootstrap_blocks must be >= 2, got {self.bootstrap_blocks}")


@dataclass(frozen=True)
class DissectionParams:
    """Network Dissection of one layer on a Broden-layout probe set (NetDissect-Lite semantics).

    ``quantile``: each unit's threshold is the exact quantile at level ``1 - quantile`` of its raw
    activations (:mod:`kdinterp.dissection.thresholds`; NetDissect-Lite's sketch estimate is not reproduced).
    ``activation_rule`` (:mod:`kdinterp.dissection.tally`): a unit's active pixels in an image count
    toward category c, with ``lite``, if some of them lie on a label of c or the image has an
    image-level label of c; with ``netdissect``, if c is present anywhere in the image.
    ``top_images``: top-activating probe images kept per unit (``top_images.npz``).
    ``activations`` (:mod:`kdinterp.dissection.activations`): where the layer's activations wait
    between the threshold pass and the tally pass: ``auto`` in memory up to ``activation_memory_mb``
    MiB, else in a float32 memmap in the output directory; ``disk`` always the memmap; ``recompute``
    a second forward pass instead (for GPUs). The results are the same either way.
    """

    broden_dir: str
    layer: str = "layer4"
    quantile: float = 0.005
    iou_threshold: float = 0.05
    categories: tuple[str, ...] = CATEGORIES
    batch_size: int = 64
    device: Literal["auto", "cpu", "cuda"] = "auto"
    activation_rule: Literal["lite", "netdissect"] = "lite"
    top_images: int = 8
    activations: Literal["auto", "disk", "recompute"] = "auto"
    activation_memory_mb: int = 1024
    sensitivity: SensitivityParams = field(default_factory=SensitivityParams)

    def __post_init__(self) -> None:
        _check(0.0 < self.quantile < 0.5, f"quantile must be in (0, 0.5), got {self.quantile}")
        _check(self.top_images >= 1, f"top_images must be >= 1, got {self.top_images}")
        _check(0.0 < self.iou_threshold <= 1.0, f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        unknown = sorted(set(self.categories) - set(CATEGORIES))
        _check(not unknown, f"categories: unknown {unknown}; Broden has {list(CATEGORIES)}")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(self.activation_memory_mb >= 0, f"activation_memory_mb must be >= 0, got {self.activation_memory_mb}")


#: Attribution methods of :func:`kdinterp.saliency.attribute` (its ``METHODS``; checked here without importing torch).
ATTRIBUTION_METHODS: tuple[str, ...] = ("input_gradient", "input_x_gradient", "grad_cam", "smoothgrad")


@dataclass(frozen=True)
class DiffROARParams:
    """DiffROAR of a model's attributions (stage ``diffroar_*@``; :mod:`kdinterp.diffroar`, Shah et al. 2021).

    ``method``: the attribution (:data:`ATTRIBUTION_METHODS`), for the true class, of the assessed
    model on the training and validation images. ``fractions``: the ``k`` grid, the share of
    pixels kept in the top-k and bottom-k data sets, each in ``(0, 1)``. The evaluator
    (:class:`kdinterp.diffroar.Evaluator`, ``width`` channels in its first block) is trained for
    ``epochs`` with Adam at ``lr`` in batches of ``batch_size``; ``seed`` fixes its initialisation
    and batch order, the same for every model, so models differ only in their attributions.
    ``train_images``: training images used (attributed, masked, retrained on), evenly spread over
    the sorted file list, i.e. over the classes (null: all). ``attribution_batch_size``: images per
    attribution pass.
    """

    method: str = "input_gradient"
    fractions: tuple[float, ...] = (0.2,)
    epochs: int = 4
    batch_size: int = 128
    lr: float = 0.005
    seed: int = 0
    width: int = 16
    train_images: int | None = None
    attribution_batch_size: int = 256
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        _check(self.method in ATTRIBUTION_METHODS,
               f"method: unknown '{self.method}'; known: {list(ATTRIBUTION_METHODS)}")
        _check(bool(self.fractions) and all(0.0 < k < 1.0 for k in self.fractions)
               and len(set(self.fractions)) == len(self.fractions),
               f"fractions must be distinct shares of pixels kept, each in (0, 1), got {list(self.fractions)}")
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        _check(self.width >= 1, f"width must be >= 1, got {self.width}")
        _check(self.train_images is None or self.train_images >= 1,
               f"train_images must be >= 1 or null, got {self.train_images}")
        _check(self.attribution_batch_size >= 1,
               f"attribution_batch_size must be >= 1, got {self.attribution_batch_size}")


@dataclass(frozen=True)
class Params:
    """All of ``params.yaml``. Cross-references (teachers, methods, roles) are checked by
    :func:`kdinterp.study.check`, which owns the list of models."""

    seeds: tuple[int, ...]
    world: WorldParams
    data: DataParams
    teachers: dict[str, TeacherParams]
    student_recipe: StudentRecipe
    students: dict[str, StudentParams]
    distilled: dict[str, DistilledParams]
    dissection: DissectionParams
    self_distilled: dict[str, DistilledParams] = field(default_factory=dict)
    controls: dict[str, ControlParams] = field(default_factory=dict)
    paper_models: dict[str, str] = field(default_factory=dict)
    diffroar: DiffROARParams = field(default_factory=DiffROARParams)

    def __post_init__(self) -> None:
        _check(bool(self.seeds), "seeds: give at least one seed")
        _check(all(seed >= 0 for seed in self.seeds), f"seeds must be >= 0, got {list(self.seeds)}")


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
