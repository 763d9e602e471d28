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

from kdinterp.core.config import ParamsError, check_ranges, from_mapping, ranged, require
from kdinterp.core.paramsfile import read_params_file
from kdinterp.core.verdict_params import (
    InstrumentControls,
    InstrumentCriteria,
    InstrumentParams,
    VerdictParams,
)

__all__ = [
    "CATEGORIES",
    "SEED_MAX",
    "ControlParams",
    "CORE_SECTIONS",
    "DataParams",
    "DistilledParams",
    "InstrumentControls",
    "InstrumentCriteria",
    "InstrumentParams",
    "ModelParams",
    "OptimParams",
    "Params",
    "ParamsError",
    "Section",
    "StudentParams",
    "StudentRecipe",
    "TeacherParams",
    "VerdictParams",
    "WorldParams",
    "load_params",
    "parse_params",
    "require",
]

#: The largest seed: NumPy's legacy seeding and torch.manual_seed both take it.
SEED_MAX = 2**32 - 1

#: Broden's six concept categories, in the order the paper lists them.
CATEGORIES: tuple[str, ...] = ("object", "part", "scene", "material", "texture", "color")


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
        require(low <= high, "object_scale", f"must be [low, high] with low <= high, got {list(self.object_scale)}")
        require(self.texture_fraction + self.closeup_fraction < 1.0, "closeup_fraction",
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
        require(self.width % 4 == 0, "width", f"must be a positive multiple of 4, got {self.width}")


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
        require(self.schedule != "multistep" or bool(self.milestones), "milestones",
               "schedule 'multistep' needs milestones, e.g. [30, 60]")
        require(list(self.milestones) == sorted(set(self.milestones)), "milestones",
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
        require(self.weights is None or bool(self.weights.strip()), "weights",
               "must be a file path or null (null: train the teacher)")


@dataclass(frozen=True)
class StudentRecipe:
    """Architecture and recipe shared by every student, so students differ only in supervision.

    ``snapshot_epochs``: after each of these epochs (1-based; ``optim.epochs`` is the trained
    student itself) every student trained from labels (section ``students``) keeps its weights, and
    its train stage writes them to ``outputs/snapshots/<key>/epoch-<e>.safetensors``
    (:meth:`kdinterp.core.study.Layout.snapshot`), for the controls of ``init: snapshot``. Distilled
    students share the recipe but write none. Epoch 0 is the initialisation: a control of ``init: random``.
    """

    model: ModelParams
    optim: OptimParams
    snapshot_epochs: tuple[int, ...] = ranged((), ge=1)

    def __post_init__(self) -> None:
        check_ranges(self)
        epochs = list(self.snapshot_epochs)
        require(epochs == sorted(set(epochs)), "snapshot_epochs", f"must be increasing and unique, got {epochs}")
        require(not epochs or epochs[-1] <= self.optim.epochs, "snapshot_epochs",
                f"{epochs[-1] if epochs else ''} is after the last epoch (optim.epochs: {self.optim.epochs}); "
                f"give epochs in 1..{self.optim.epochs}")


@dataclass(frozen=True)
class StudentParams:
    """A student trained from the labels alone: cross-entropy with label smoothing epsilon.

    ``shuffle_labels``: the data randomisation test (Zhang et al. 2017; Adebayo et al. 2018, "Sanity
    checks for saliency maps"): the training labels are permuted once across the training images
    (:func:`kdinterp.training.data.shuffle_labels`, from the model's seed), so the images keep their
    class counts but lose their classes; the validation labels are untouched.
    """

    label_smoothing: float = ranged(0.0, ge=0, lt=1)
    shuffle_labels: bool = False

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
    """A control model: the student recipe's architecture, never trained by its own stage.

    Its weights (``init``):

    * ``random``: the weights every student of that seed starts from (``torch.manual_seed(seed)``
      before the model is built), so its dissection is the floor that training raises (Bau et al.,
      CVPR 2017, §3.2, dissect randomly initialised networks the same way);
    * ``snapshot``: the weights of the student ``student`` (a key of ``students``) of the same seed
      after epoch ``epoch`` (one of ``student_recipe.snapshot_epochs``): the detector count along
      training. Both keys are required with ``snapshot`` and refused with ``random``.

    ``batchnorm``: ``as_is`` keeps those weights' BatchNorm running statistics (an initialisation's:
    mean 0, variance 1); ``recalibrated`` recomputes them on the training images, evaluation
    transform, in data-set order, as a cumulative average over batches
    (:func:`kdinterp.training.batchnorm.recalibrate_batchnorm`): the fairer null, whose eval-mode
    activations are normalised as a trained network's are.

    Cross-references (``student``, ``epoch``) are checked by :func:`kdinterp.core.study.check`.
    """

    init: Literal["random", "snapshot"] = "random"
    batchnorm: Literal["as_is", "recalibrated"] = "as_is"
    student: str | None = None
    epoch: int | None = ranged(None, ge=1)

    def __post_init__(self) -> None:
        check_ranges(self)
        snapshot = self.init == "snapshot"
        for key, value in (("student", self.student), ("epoch", self.epoch)):
            require((value is not None) == snapshot, key,
                    "init 'snapshot' needs the student and the epoch, e.g. {init: snapshot, student: scratch, "
                    "epoch: 4}" if snapshot else
                    f"is only for init 'snapshot' (got {value!r} with init 'random'); remove it or set init: snapshot")


@dataclass(frozen=True)
class Section:
    """A params section that a measure owns (:mod:`kdinterp.measures.registry` declares them).

    Attributes:
        schema: the frozen dataclass the section converts to (:func:`kdinterp.core.config.from_mapping`).
        required: the section must be present; else a missing or null section reads as ``default``
            (None: the measure is off, e.g. ``saliency: null`` for data without saliency ground truth).
        default: the value of a missing section that is not required.
    """

    schema: type
    required: bool = True
    default: Any = None


@dataclass(frozen=True)
class Params:
    """All of ``params.yaml``. Cross-references (teachers, methods, roles, seeds) are checked by
    :func:`kdinterp.core.study.check`, which owns the list of models.

    ``seeds``: the seeds of the students, distilled and self-distilled students; ``control_seeds``
    (a subset; None: ``seeds``): those of the controls, trained (``trained_controls``, e.g. shuffled
    labels: :class:`StudentParams`) or not (``controls``).

    The sections of the study itself are fields. The sections of the measures (``dissection``,
    ``saliency``, ``diffroar`` ...) are in :attr:`sections`, each converted by the schema its measure
    declares, and read as attributes too: ``params.dissection`` is ``params.sections["dissection"]``.
    """

    seeds: tuple[int, ...] = ranged(ge=0, le=SEED_MAX)
    world: WorldParams
    data: DataParams
    teachers: dict[str, TeacherParams]
    student_recipe: StudentRecipe
    students: dict[str, StudentParams]
    distilled: dict[str, DistilledParams]
    control_seeds: tuple[int, ...] | None = ranged(None, ge=0, le=SEED_MAX)
    self_distilled: dict[str, DistilledParams] = field(default_factory=dict)
    trained_controls: dict[str, StudentParams] = field(default_factory=dict)
    controls: dict[str, ControlParams] = field(default_factory=dict)
    paper_models: dict[str, str] = field(default_factory=dict)
    verdicts: VerdictParams = field(default_factory=VerdictParams)
    instrument: InstrumentParams | None = None
    sections: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(bool(self.seeds), "seeds", "give at least one seed")
        check_ranges(self)  # distinct seeds: kdinterp.core.study.check

    def __getattr__(self, name: str) -> Any:
        """A measure's section: ``params.dissection`` is ``params.sections["dissection"]``.

        Raises:
            AttributeError: no field and no measure section of that name.
        """
        sections = self.__dict__.get("sections", {})
        if name in sections:
            return sections[name]
        raise AttributeError(f"params has no section '{name}'")

    def with_section(self, name: str, value: Any) -> Params:
        """A copy with measure section ``name`` replaced by ``value``."""
        return dataclasses.replace(self, sections={**self.sections, name: value})


#: The fields of :class:`Params` that are read from the file (``sections`` is filled from the measures').
CORE_SECTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Params) if f.name != "sections")


def parse_params(raw: Any, sections: dict[str, Section]) -> Params:
    """Convert a parsed ``params.yaml`` mapping into :class:`Params`.

    Args:
        raw: the parsed YAML document.
        sections: the measures' sections (name -> :class:`Section`), from the measure registry.

    Raises:
        ParamsError: an unknown or missing key, a wrong type or a value out of range; the message
            names the dotted key.
    """
    if not isinstance(raw, dict):
        raise ParamsError(f"expected a mapping of sections, got {type(raw).__name__}")
    own = {k: v for k, v in raw.items() if k not in sections}
    if "sections" in own:
        raise ParamsError("sections: unknown key (each measure's section is a top-level key of its own)")
    parsed = {}
    for name, section in sections.items():
        value = raw.get(name)
        if value is None:
            if section.required:
                raise ParamsError(f"{name}: required section is missing")
            parsed[name] = section.default
        else:
            parsed[name] = from_mapping(section.schema, value, name)
    params = from_mapping(Params, own, "")
    return dataclasses.replace(params, sections=parsed)


def load_params(path: str | Path, sections: dict[str, Section]) -> Params:
    """Read and validate ``params.yaml``.

    Args:
        path: the parameter file.
        sections: the measures' sections (:data:`kdinterp.measures.registry.SECTIONS`).

    Returns:
        The validated :class:`Params`.

    Raises:
        FileNotFoundError: the file does not exist.
        ParamsError: a key is unknown, missing or of the wrong type, or the file is too large
            (:func:`kdinterp.core.paramsfile.read_params_file`); the message names the file and the dotted key.
    """
    p = Path(path)
    raw = read_params_file(p, known=(*CORE_SECTIONS, *sections))
    try:
        return parse_params(raw, sections)
    except ParamsError as err:
        raise ParamsError(f"{p}: {err}") from None


def as_dict(section: object) -> dict:
    """A params dataclass as a plain dict (for metadata files and fingerprints)."""
    return dataclasses.asdict(section)  # type: ignore[arg-type]
