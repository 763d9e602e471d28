"""Typed, frozen views of ``params.yaml``.

Nothing else in the package reads ``params.yaml``: the CLI loads it here and passes the sections
down. Unknown or renamed keys fail loudly (see :mod:`kdinterp.core.config`). The meaning of every
value is documented next to it in ``params.yaml``; this module states types, ranges and
cross-references.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from kdinterp.core.config import ParamsError, check_ranges, from_mapping, ranged

__all__ = [
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
    "SaliencyParams",
    "SensitivityParams",
    "StudentParams",
    "StudentRecipe",
    "TeacherParams",
    "WorldParams",
    "load_params",
]

#: The largest seed: NumPy's legacy seeding and torch.manual_seed both take it.
SEED_MAX = 2**32 - 1

#: Broden's six concept categories, in the order the paper lists them.
CATEGORIES: tuple[str, ...] = ("object", "part", "scene", "material", "texture", "color")


def _check(condition: bool, key: str, message: str) -> None:
    """Raise :class:`ParamsError` for ``key`` (a field name; the loader prefixes its path) unless ``condition``."""
    if not condition:
        raise ParamsError(message, key)


@dataclass(frozen=True)
class WorldParams:
    """How the concept world is generated; recorded verbatim in ``world.json``.

    Checked here: types and ranges. Checked by :mod:`kdinterp.world.params` when a world is
    generated: ``object_types`` and ``subtypes_per_type`` against the vocabulary.

    Sizes are in pixels (square images); counts are numbers of images; probabilities and
    fractions are in [0, 1].
    """

    seed: int = ranged(0, ge=0, le=SEED_MAX)
    image_size: int = ranged(32, ge=16)
    probe_image_size: int = ranged(64, ge=16)
    train_per_class: int = ranged(200, ge=1)
    val_per_class: int = ranged(50, ge=1)
    probe_images: int = ranged(1500, ge=1)
    object_types: int = ranged(8, ge=1)  # object types that become classes: the first N of the vocabulary
    subtypes_per_type: int = ranged(3, ge=1)  # classes per object type: its first N subtypes
    context: float = ranged(0.8, ge=0, le=1)  # P(the background is one of the object type's usual scenes); else any
    distractor_prob: float = ranged(0.3, ge=0, le=1)  # P(a smaller object of another type is drawn behind the object)
    occlusion_prob: float = ranged(0.2, ge=0, le=1)  # P(a small object of another type partly occludes the object)
    object_scale: tuple[float, float] = ranged((0.5, 0.85), ge=0.1, le=1)  # object span in classification images,
    # share of the side: [low, high]
    max_rotation: float = ranged(15.0, ge=0, le=180)  # objects are rotated uniformly in +-max_rotation degrees
    subtype_similarity: float = ranged(0.0, ge=0, le=1)  # 0: subtypes as designed; 1: a type's subtypes look identical
    color_jitter: float = ranged(0.15, ge=0, le=1)  # max relative change of brightness, contrast and saturation
    noise: float = ranged(0.03, ge=0, le=1)  # std of Gaussian pixel noise, as a share of 255
    texture_fraction: float = ranged(0.2, ge=0, le=1)  # share of probe images that are texture tiles
    closeup_fraction: float = ranged(0.4, ge=0, le=1)  # share of probe images that are object close-ups (else scenes)
    max_probe_objects: int = ranged(3, ge=1)  # probe scenes hold 1..max_probe_objects objects
    supersample: int = ranged(2, ge=1)  # render at N x the size, then average N x N blocks (anti-aliasing)

    def __post_init__(self) -> None:
        check_ranges(self)
        low, high = self.object_scale
        _check(low <= high, "object_scale", f"must be [low, high] with low <= high, got {list(self.object_scale)}")
        _check(self.texture_fraction + self.closeup_fraction < 1.0, "closeup_fraction",
               f"texture_fraction + closeup_fraction must be < 1 (the probe set needs scene images), "
               f"got {self.texture_fraction} + {self.closeup_fraction}; lower one of them")


@dataclass(frozen=True)
class ModelParams:
    """A torchvision ResNet, optionally narrowed and with a stem for small images."""

    arch: Literal["resnet10", "resnet18", "resnet34", "resnet50"]
    width: int = ranged(64, ge=4)
    small_input: bool = False

    def __post_init__(self) -> None:
        check_ranges(self)
        _check(self.width % 4 == 0, "width", f"must be a positive multiple of 4, got {self.width}")


@dataclass(frozen=True)
class OptimParams:
    """SGD with momentum and a learning-rate schedule stepped once per epoch; ``batch_size`` is global.

    ``amp_bf16`` (bf16 autocast) and ``channels_last`` apply on CUDA only; on the CPU they are ignored.
    """

    epochs: int = ranged(ge=1)
    batch_size: int = ranged(ge=1)
    lr: float = ranged(gt=0)
    momentum: float = ranged(0.9, ge=0, lt=1)
    weight_decay: float = ranged(5e-4, ge=0)
    schedule: Literal["cosine", "multistep", "constant"] = "cosine"
    milestones: tuple[int, ...] = ranged((), ge=1)  # epochs (1-based) after which the lr is multiplied by gamma
    gamma: float = ranged(0.1, gt=0, le=1)
    amp_bf16: bool = False
    channels_last: bool = False

    def __post_init__(self) -> None:
        check_ranges(self)
        _check(self.schedule != "multistep" or bool(self.milestones), "milestones",
               "schedule 'multistep' needs milestones, e.g. [30, 60]")
        _check(list(self.milestones) == sorted(set(self.milestones)), "milestones",
               f"must be increasing and unique, got {list(self.milestones)}")


@dataclass(frozen=True)
class DataParams:
    """The classification data set (ImageFolder layout) and its loader."""

    train_dir: str
    val_dir: str
    image_size: int = ranged(ge=8)
    augment: Literal["crop_flip", "imagenet"]
    mean: tuple[float, float, float] = ranged(ge=0, le=1)  # per RGB channel, of pixel values scaled to [0, 1]
    std: tuple[float, float, float] = ranged(gt=0)
    world_file: str | None = None
    num_workers: int = ranged(0, ge=0)
    eval_batch_size: int = ranged(256, ge=1)

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True)
class TeacherParams:
    """A teacher: its architecture, its recipe, the label smoothing it is trained with, and its seed.

    A teacher is one model per teacher seed (the paper distils from one pretrained teacher); the
    students' ``seeds`` do not multiply it.

    ``weights``: a user-provided torchvision ``state_dict`` file (``.pth``/``.pt`` read with
    ``torch.load(weights_only=True)``, or ``.safetensors``) to import instead of training, e.g.
    ``pretrained/resnet34-b627a593.pth`` for the paper's teacher; it must lie in
    :data:`kdinterp.core.study.PRETRAINED_DIR` (checked by :func:`kdinterp.core.study.check`). None: train
    the teacher with ``optim`` and ``label_smoothing`` (both unused when ``weights`` is set).
    """

    model: ModelParams
    optim: OptimParams
    label_smoothing: float = ranged(0.0, ge=0, lt=1)
    seed: int = ranged(0, ge=0, le=SEED_MAX)
    weights: str | None = None

    def __post_init__(self) -> None:
        check_ranges(self)
        _check(self.weights is None or bool(self.weights.strip()), "weights",
               "must be a file path or null (null: train the teacher)")


@dataclass(frozen=True)
class StudentRecipe:
    """Architecture and recipe shared by every student, so students differ only in supervision."""

    model: ModelParams
    optim: OptimParams


@dataclass(frozen=True)
class StudentParams:
    """A student trained from the labels alone: cross-entropy with label smoothing epsilon."""

    label_smoothing: float = ranged(0.0, ge=0, lt=1)

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True)
class DistilledParams:
    """A student trained from a teacher: logit KD (Hinton) or a feature-based method.

    ``alpha`` is the paper's alpha, the weight of the logit-distillation term:
    ``(1 - alpha) * CE(y, softmax(z_s)) + alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T))``,
    plus the method's feature term for ``at``, ``ft``, ``crd`` and ``sskd`` (``alpha = 0``: the
    feature method without logit distillation). torchdistill's ``alpha`` is the other weight.
    ``teacher`` names a teacher (section ``distilled``) or, for self-distillation (section
    ``self_distilled``), a student trained from labels, taken at the same seed. ``method`` is a key
    of :data:`kdinterp.core.study.METHODS`; ``options`` holds its settings, validated there.
    """

    teacher: str
    method: str = "kd"
    temperature: float = ranged(4.0, gt=0)
    alpha: float = ranged(0.5, ge=0, le=1)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_ranges(self)


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

    quantiles: tuple[float, ...] = ranged((0.0025, 0.005, 0.01), gt=0, lt=0.5)
    iou_thresholds: tuple[float, ...] = ranged((0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10), gt=0, le=1)
    rotation_seed: int | None = ranged(0, ge=0, le=SEED_MAX)
    bootstrap_replicates: int = ranged(1000, ge=2)
    bootstrap_blocks: int = ranged(20, ge=2)

    def __post_init__(self) -> None:
        check_ranges(self)
        _check(bool(self.iou_thresholds), "iou_thresholds", "give at least one IoU threshold, e.g. [0.05]")


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
    quantile: float = ranged(0.005, gt=0, lt=0.5)
    iou_threshold: float = ranged(0.05, gt=0, le=1)
    categories: tuple[str, ...] = CATEGORIES
    batch_size: int = ranged(64, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    activation_rule: Literal["lite", "netdissect"] = "lite"
    top_images: int = ranged(8, ge=1)
    activations: Literal["auto", "disk", "recompute"] = "auto"
    activation_memory_mb: int = ranged(1024, ge=0)
    sensitivity: SensitivityParams = field(default_factory=SensitivityParams)

    def __post_init__(self) -> None:
        check_ranges(self)
        unknown = sorted(set(self.categories) - set(CATEGORIES))
        _check(not unknown, "categories", f"unknown {unknown}; Broden has {list(CATEGORIES)}")


#: The attribution methods (the one list): :func:`kdinterp.measures.attribution.attribute` implements each, in report order.
SALIENCY_METHODS: tuple[str, ...] = ("input_gradient", "input_x_gradient", "grad_cam", "smoothgrad")


@dataclass(frozen=True)
class SaliencyParams:
    """Saliency maps, five-band scores and object mass shares on the validation images (stage ``saliency_*@``).

    ``methods``: attribution methods of :data:`kdinterp.measures.attribution.METHODS`. ``ground_truth_dir``: the
    ground-truth saliency maps of ``data.val_dir``'s images (same relative paths;
    :mod:`kdinterp.world.saliency`). ``num_images``: validation images scored, spread evenly over
    the sorted file list (null: all). ``smoothgrad_samples``: noisy copies per image;
    ``smoothgrad_noise``: the noise std as a share of the pixel range [0, 1] (Smilkov et al. 2017
    use 0.1-0.2). ``thresholds``: the four five-band thresholds (:mod:`kdinterp.measures.five_band`; the
    reference's -0.7, -0.3, 0.3, 0.7). ``grid_images``: images whose maps go into ``maps.npz`` for
    the P14 grids. ``layer``: Grad-CAM's and the activation map's layer.
    """

    ground_truth_dir: str
    methods: tuple[str, ...] = SALIENCY_METHODS
    num_images: int | None = ranged(None, ge=1)
    batch_size: int = ranged(100, ge=1)
    smoothgrad_samples: int = ranged(16, ge=1)
    smoothgrad_noise: float = ranged(0.15, ge=0.0, le=1.0)
    thresholds: tuple[float, ...] = ranged((-0.7, -0.3, 0.3, 0.7), ge=-1.0, le=1.0)
    grid_images: int = ranged(8, ge=1)
    layer: str = "layer4"
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        check_ranges(self)
        unknown = sorted(set(self.methods) - set(SALIENCY_METHODS))
        _check(bool(self.methods) and not unknown, "methods",
               f"unknown {unknown}; use some of {list(SALIENCY_METHODS)}")
        _check(len(self.thresholds) == 4 and all(a < b for a, b in zip(self.thresholds, self.thresholds[1:])),
               "thresholds", f"must be 4 increasing numbers, got {list(self.thresholds)}")


@dataclass(frozen=True)
class DiffROARParams:
    """DiffROAR of a model's attributions (stage ``diffroar_*@``; :mod:`kdinterp.measures.roar`, Shah et al. 2021).

    ``method``: the attribution (:data:`SALIENCY_METHODS`), for the true class, of the assessed
    model on the training and validation images. ``fractions``: the ``k`` grid, the share of
    pixels kept in the top-k and bottom-k data sets, each in ``(0, 1)``. The evaluator
    (:class:`kdinterp.measures.roar.Evaluator`, ``width`` channels in its first block) is trained for
    ``epochs`` with Adam at ``lr`` in batches of ``batch_size``; ``seed`` fixes its initialisation
    and batch order, the same for every model, so models differ only in their attributions.
    ``train_images``: training images used (attributed, masked, retrained on), evenly spread over
    the sorted file list, i.e. over the classes (null: all). ``attribution_batch_size``: images per
    attribution pass.
    """

    method: str = "input_gradient"
    fractions: tuple[float, ...] = ranged((0.2,), gt=0.0, lt=1.0)
    epochs: int = ranged(4, ge=1)
    batch_size: int = ranged(128, ge=1)
    lr: float = ranged(0.005, gt=0)
    seed: int = ranged(0, ge=0, le=SEED_MAX)
    width: int = ranged(16, ge=1)
    train_images: int | None = ranged(None, ge=1)
    attribution_batch_size: int = ranged(256, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        check_ranges(self)
        _check(self.method in SALIENCY_METHODS, "method",
               f"unknown '{self.method}'; use one of {list(SALIENCY_METHODS)}")
        _check(bool(self.fractions) and len(set(self.fractions)) == len(self.fractions), "fractions",
               f"give one or more distinct shares of pixels kept, got {list(self.fractions)}")


@dataclass(frozen=True)
class Params:
    """All of ``params.yaml``. Cross-references (teachers, methods, roles) are checked by
    :func:`kdinterp.core.study.check`, which owns the list of models."""

    seeds: tuple[int, ...] = ranged(ge=0, le=SEED_MAX)
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
    saliency: SaliencyParams | None = None  # None: no saliency stage data (e.g. ImageNet without ground truth)
    diffroar: DiffROARParams = field(default_factory=DiffROARParams)

    def __post_init__(self) -> None:
        _check(bool(self.seeds), "seeds", "give at least one seed")
        check_ranges(self)  # distinct seeds: kdinterp.core.study.check


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
        raise ParamsError(f"{p}: not valid YAML ({yaml_problem(err)}); fix the syntax there, or "
                          "`git checkout params.yaml` for the default") from err
    try:
        return from_mapping(Params, raw, "")
    except ParamsError as err:
        raise ParamsError(f"{p}: {err}") from None


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML parse error on one line: the problem and where (``line 3, column 5: ...``)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = " ".join(str(getattr(err, "problem", None) or err).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def as_dict(section: object) -> dict:
    """A params dataclass as a plain dict (for metadata files and fingerprints)."""
    return dataclasses.asdict(section)  # type: ignore[arg-type]
