"""The study's contract: which models exist, how each one is trained, and where every output lives.

One owner for three facts that stages, validators, figures, the report and the tests all need:

* **Which models exist** (:func:`models`): every teacher once (with its own ``seed``), every
  student trained from labels, every distilled and every self-distilled student once per seed in
  ``params.seeds``. A :class:`Model` carries its name, group, seed, architecture, recipe, method,
  paper role, the model it distils from, and its DVC stage names. Students of one seed share their
  initialisation and data order (the seed fixes both), so their differences are paired.
* **The method table** (:data:`METHODS`): ``ce``, ``kd``, ``at``, ``ft``, ``crd``, ``sskd``, each
  with its options type and one builder signature,
  ``build(student, teacher, model, num_classes, num_samples) -> Distiller``.
* **The output layout** (:class:`Layout`): the path of every stage output, and the table schemas
  (:data:`TALLY_COLUMNS`, :data:`UNITS_COLUMNS`, :data:`SUMMARY_KEYS`) that the writers produce and
  the validators check.

This module imports nothing heavy at import time (the builders import torch code when called), so
the CLI can validate a parameter file before loading torch. ``dvc.yaml`` spells out the same layout
for DVC; ``tests/test_study.py`` checks the two against each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdinterp.core.config import ParamsError, from_mapping
from kdinterp.core.errors import UnknownModelError
from kdinterp.core.params import (CATEGORIES, ControlParams, DistilledParams, ModelParams, OptimParams, Params,
                             StudentParams, TeacherParams)

if TYPE_CHECKING:
    from torch import nn

    from kdinterp.training.distill import Distiller

__all__ = ["DIFFROAR_SECTIONS", "FIVE_BAND_COLUMNS", "GROUPS", "METHODS", "PRETRAINED_DIR", "ROLES", "SENSITIVITY_COLUMNS", "STAGE_MODULES",
           "SUMMARY_KEYS", "TALLY_COLUMNS", "UNITS_COLUMNS", "Group", "Layout", "Method", "Model", "check", "find",
           "models", "parse_options", "resolve"]

#: The paper's roles (``params.paper_models``), in the order of its Figure 1 after the teacher.
ROLES: tuple[str, ...] = ("teacher", "scratch", "kd", "ls")

#: The folder (relative to the repository root) of user-provided weights (``teachers.<name>.weights``).
#: Every ``train_teacher`` stage depends on it in dvc.yaml: a DVC dependency cannot be null, and a
#: trained teacher has no weights file, so the dependency is this always-present (committed) folder.
PRETRAINED_DIR = "pretrained"


# --------------------------------------------------------------------------- groups and models


@dataclass(frozen=True)
class Group:
    """A params section of models, and the DVC stages that train, evaluate and dissect them.

    Attributes:
        section: the ``params.yaml`` section (``teachers``, ``students``, ``distilled``, ``self_distilled``).
        kind: the group's short name, the suffix of its evaluate/dissect stages (``evaluate_<kind>@``).
        train_stage: the DVC stage that trains it.
        per_seed: one model per seed of ``params.seeds`` (a ``matrix`` stage) or one per entry
            (teachers: a ``foreach`` stage, seed from the entry).
        teacher_from: the section its teachers come from (None: trained from labels).
        trained: False for controls: the train stage only writes the initial weights (no history,
            no checkpoints).
    """

    section: str
    kind: str
    train_stage: str
    per_seed: bool
    teacher_from: str | None = None
    trained: bool = True


GROUPS: tuple[Group, ...] = (
    Group("teachers", "teacher", "train_teacher", per_seed=False),
    Group("students", "student", "train_student", per_seed=True),
    Group("distilled", "distilled", "distill_student", per_seed=True, teacher_from="teachers"),
    Group("self_distilled", "self_distilled", "self_distill_student", per_seed=True, teacher_from="students"),
    Group("controls", "control", "init_control", per_seed=True, trained=False),
)
_GROUP = {g.section: g for g in GROUPS}


@dataclass(frozen=True)
class Model:
    """One trained model of the study: a (name, seed) pair.

    Attributes:
        name: its key in ``params.yaml``.
        group: its params section and stages.
        seed: fixes its initialisation, data order and augmentation.
        arch: its architecture.
        optim: its training recipe.
        method: its key in :data:`METHODS` (``ce`` for a control: the recipe it would be trained with).
        recipe: its own params entry.
        role: its paper role (``params.paper_models``), or None.
        teacher: the model it distils from (same seed for self-distillation), or None.
    """

    name: str
    group: Group
    seed: int
    arch: ModelParams
    optim: OptimParams
    method: str
    recipe: TeacherParams | StudentParams | DistilledParams | ControlParams
    role: str | None = None
    teacher: Model | None = None

    @property
    def imported(self) -> bool:
        """True for a teacher whose weights come from a user-provided file (``teachers.<name>.weights``)."""
        return getattr(self.recipe, "weights", None) is not None

    @property
    def key(self) -> str:
        """The DVC stage suffix and file stem: ``teacher`` for a teacher, ``scratch-0`` per seed."""
        return f"{self.name}-{self.seed}" if self.group.per_seed else self.name

    def stage(self, step: str) -> str:
        """The DVC stage of ``step`` (``train``, ``evaluate`` or ``dissect``) for this model."""
        prefix = self.group.train_stage if step == "train" else f"{step}_{self.group.kind}"
        return f"{prefix}@{self.key}"


def _roles(params: Params) -> dict[str, str]:
    return {name: role for role, name in params.paper_models.items()}


def models(params: Params) -> list[Model]:
    """Every model of the study, in params order: teachers, then each student group seed by seed.

    Returns:
        Teachers (one each), then for every seed of ``params.seeds``: the students, the distilled
        and the self-distilled students, and the controls of that seed.

    Raises:
        ParamsError: see :func:`check`.
    """
    check(params)
    roles = _roles(params)
    out = {}
    for name, spec in params.teachers.items():
        out[name, spec.seed] = Model(name, _GROUP["teachers"], spec.seed, spec.model, spec.optim, "ce", spec,
                                     roles.get(name))
    recipe = params.student_recipe
    for seed in params.seeds:
        for name, spec in params.students.items():
            out[name, seed] = Model(name, _GROUP["students"], seed, recipe.model, recipe.optim, "ce", spec,
                                    roles.get(name))
        for section in ("distilled", "self_distilled"):
            for name, spec in getattr(params, section).items():
                source = params.teachers[spec.teacher].seed if section == "distilled" else seed
                out[name, seed] = Model(name, _GROUP[section], seed, recipe.model, recipe.optim, spec.method, spec,
                                        roles.get(name), out[spec.teacher, source])
        for name, spec in params.controls.items():
            out[name, seed] = Model(name, _GROUP["controls"], seed, recipe.model, recipe.optim, "ce", spec,
                                    roles.get(name))
    return list(out.values())


def find(params: Params, name: str, seed: int | None = None) -> Model:
    """The model ``name`` (at ``seed``; a teacher's seed is its own and may be omitted).

    Raises:
        UnknownModelError: (a ``KeyError``) no such model; the message lists the models.
    """
    every = models(params)
    for model in every:
        if model.name == name and (seed is None and not model.group.per_seed or seed == model.seed):
            return model
    known = ", ".join(m.key for m in every)
    raise UnknownModelError(f"no model '{name}'" + ("" if seed is None else f" at seed {seed}")
                            + f" in params.yaml ({known})")


def check(params: Params) -> None:
    """Cross-checks the params schema cannot express: teachers, method names, options, roles.

    Raises:
        ParamsError: the message names the dotted key and the fix.
    """
    if not params.seeds or len(set(params.seeds)) != len(params.seeds):
        raise ParamsError(f"seeds: give one or more distinct seeds, got {list(params.seeds)}")
    sections = {g.section: getattr(params, g.section) for g in GROUPS}
    seen: dict[str, str] = {}
    for section, entries in sections.items():
        for name in entries:
            if name in seen:
                raise ParamsError(f"{section}.{name}: the name is also used in {seen[name]}; model names are unique")
            if not name.isidentifier():
                raise ParamsError(f"{section}.{name}: model names must be identifiers (letters, digits, _)")
            seen[name] = section
    for name, spec in params.teachers.items():
        _check_weights(f"teachers.{name}.weights", spec.weights)
    for group in GROUPS:
        if group.teacher_from is None:
            continue
        for name, spec in sections[group.section].items():
            where = f"{group.section}.{name}"
            if spec.teacher not in sections[group.teacher_from]:
                raise ParamsError(f"{where}.teacher: '{spec.teacher}' is not one of {group.teacher_from}: "
                                  f"{sorted(sections[group.teacher_from])}")
            if spec.method not in METHODS or spec.method == "ce":
                raise ParamsError(f"{where}.method: '{spec.method}' is not a distillation method; "
                                  f"known: {', '.join(m for m in METHODS if m != 'ce')}")
            parse_options(spec.method, spec.options, f"{where}.options")
    for role, name in params.paper_models.items():
        if role not in ROLES:
            raise ParamsError(f"paper_models.{role}: unknown role; roles are {', '.join(ROLES)}")
        if name not in seen:
            raise ParamsError(f"paper_models.{role}: '{name}' is not a model defined in params.yaml")


def _check_weights(where: str, weights: str | None) -> None:
    """A teacher's weights file must be a relative path inside :data:`PRETRAINED_DIR` (dvc.yaml's dependency).

    Raises:
        ParamsError: an absolute path, a path outside the folder, or one with ``..``.
    """
    if weights is None:
        return
    parts = Path(weights).parts
    if Path(weights).is_absolute() or len(parts) < 2 or parts[0] != PRETRAINED_DIR or ".." in parts:
        raise ParamsError(f"{where}: '{weights}' must be a file in {PRETRAINED_DIR}/ (the folder dvc.yaml tracks, so "
                          f"a changed file reruns the import); copy or link it there and set e.g. "
                          f"{where}: {PRETRAINED_DIR}/resnet34-b627a593.pth")


# --------------------------------------------------------------------------- the method table


@dataclass(frozen=True)
class Method:
    """A way to train a student.

    Attributes:
        name: its key (``method:`` in params.yaml).
        options: the frozen dataclass of its ``options:``, as ``module:Class`` (None: it takes none).
        builder: ``module:function`` with the one signature
            ``build(student, teacher, model, num_classes, num_samples) -> Distiller`` (``teacher`` is
            None for ``ce``; ``model`` is the :class:`Model` being trained, whose recipe has the label
            smoothing, or the temperature, alpha and options). Named, not imported, so that reading
            the table loads no torch code.
        source: the paper the loss comes from, and the implementation it follows.
        distiller: the Distiller class of a feature method, as ``module:Class``.
    """

    name: str
    options: str | None
    builder: str
    source: str
    distiller: str | None = None

    def build(self, student: nn.Module, teacher: nn.Module | None, model: Model, num_classes: int,
              num_samples: int) -> Distiller:
        """Call the builder (see the class docstring)."""
        return _import(self.builder)(student, teacher, model, num_classes, num_samples)


#: Method name -> how a student is trained with it. Builders live in :mod:`kdinterp.training.methods`.
METHODS: dict[str, Method] = {
    "ce": Method("ce", None, "kdinterp.training.methods:build_ce", "cross-entropy; label smoothing: Szegedy et al., CVPR 2016"),
    "kd": Method("kd", None, "kdinterp.training.methods:build_kd", "Hinton et al., 2015; torchdistill KDLoss"),
    "at": Method("at", "kdinterp.training.feature_kd.at:ATOptions", "kdinterp.training.methods:build_feature",
                 "Zagoruyko & Komodakis, ICLR 2017; torchdistill ATLoss", "kdinterp.training.feature_kd.at:AT"),
    "ft": Method("ft", "kdinterp.training.feature_kd.ft:FTOptions", "kdinterp.training.methods:build_feature",
                 "Kim et al., NeurIPS 2018; torchdistill FTLoss", "kdinterp.training.feature_kd.ft:FT"),
    "crd": Method("crd", "kdinterp.training.feature_kd.crd:CRDOptions", "kdinterp.training.methods:build_feature",
                  "Tian et al., ICLR 2020; torchdistill CRDLoss", "kdinterp.training.feature_kd.crd:CRD"),
    "sskd": Method("sskd", "kdinterp.training.feature_kd.sskd:SSKDOptions", "kdinterp.training.methods:build_feature",
                   "Xu et al., ECCV 2020; torchdistill SSKDLoss", "kdinterp.training.feature_kd.sskd:SSKD"),
}


def resolve(path: str) -> Any:
    """The object named ``module:attr`` (a builder, options or distiller of :data:`METHODS`)."""
    return _import(path)


def _import(path: str) -> Any:
    import importlib

    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def parse_options(method: str, options: Any, where: str = "options") -> Any:
    """Validate a method's ``options`` from params.yaml into its options dataclass.

    Args:
        method: a key of :data:`METHODS`.
        options: a mapping (missing keys take the paper's defaults), None, or an options object.
        where: the dotted key of ``options``, for messages.

    Returns:
        The frozen options object, or None for a method without options.

    Raises:
        ParamsError: unknown method, options given to a method without any, unknown key or bad value.
    """
    if method not in METHODS:
        raise ParamsError(f"{where}: unknown method '{method}'; known: {', '.join(METHODS)}")
    if METHODS[method].options is None:
        if options:
            raise ParamsError(f"{where}: method '{method}' takes no options")
        return None
    cls = _import(METHODS[method].options)
    return options if isinstance(options, cls) else from_mapping(cls, dict(options or {}), where)


# --------------------------------------------------------------------------- the output layout

#: The sections whose models get a ``diffroar_<kind>@<key>`` stage: the students of every seed (the
#: teacher and the untrained controls are not assessed; P13 compares KD with scratch).
DIFFROAR_SECTIONS: tuple[str, ...] = ("students", "distilled", "self_distilled")

#: ``tally.csv``: one row per (unit, concept) with a non-zero intersection.
TALLY_COLUMNS: tuple[str, ...] = (
    "unit", "concept", "concept_id", "category", "intersection", "unit_area", "concept_area", "iou")
#: ``units.csv``: one row per unit; its best concept overall and per category.
UNITS_COLUMNS: tuple[str, ...] = (("unit", "concept", "concept_id", "category", "iou", "detector")
                                  + tuple(f"{c}_{what}" for c in CATEGORIES for what in ("concept", "iou")))
#: ``sensitivity.csv``: one row per (basis, quantile, IoU threshold) (:mod:`kdinterp.dissection.sensitivity`).
SENSITIVITY_COLUMNS: tuple[str, ...] = ("basis", "quantile", "iou_threshold", "num_units", "num_detectors",
                                        "num_unique_concepts", "mean_best_iou")
#: ``five_band.csv`` (stage ``saliency_*@``): one row per attribution method, means over images
#: (:mod:`kdinterp.measures.five_band`).
FIVE_BAND_COLUMNS: tuple[str, ...] = ("method", "num_images", "pixel_acc", "precision", "recall", "fpr",
                                      "pixel_acc_sd", "precision_sd", "recall_sd", "fpr_sd", "object_mass")
#: ``summary.json`` keys determined by ``units.csv`` (nested keys flattened with a dot).
SUMMARY_COUNTS: tuple[str, ...] = (("num_detectors", "num_unique_concepts")
                                   + tuple(f"detectors.{c}" for c in CATEGORIES)
                                   + tuple(f"unique_concepts.{c}" for c in CATEGORIES))
#: ``summary.json`` keys (nested keys flattened with a dot).
SUMMARY_KEYS: tuple[str, ...] = (("model", "seed", "layer", "num_units", "num_images", "quantile",
                                  "iou_threshold") + SUMMARY_COUNTS
                                 + tuple(f"probe_bootstrap.{k}" for k in ("replicates", "blocks", "mean", "sd",
                                                                          "low", "high")))


@dataclass(frozen=True)
class Layout:
    """Where every stage output lives, under ``root`` (``outputs/``); ``dvc.yaml`` spells out the same paths.

    Per model (``key`` = :attr:`Model.key`): ``models/<section>/<key>.safetensors``,
    ``checkpoints/<key>/``, ``training/<key>.csv``, ``metrics/<key>.json``,
    ``predictions/<key>.npz``, ``dissection/<key>/{thresholds.npy, tally.csv, units.csv,
    top_images.npz, summary.json, sensitivity.csv}``, ``saliency/<key>/{five_band.csv, summary.json,
    maps.npz}``, ``diffroar/<key>/summary.json`` (the models of :data:`DIFFROAR_SECTIONS`).
    Study-wide: ``metrics/similarity.json``,
    ``validation/data.json``, ``validation/dissection.json``.
    """

    root: Path = Path("outputs")

    THRESHOLDS = "thresholds.npy"
    TALLY = "tally.csv"
    UNITS = "units.csv"
    TOP_IMAGES = "top_images.npz"
    SUMMARY = "summary.json"
    SENSITIVITY = "sensitivity.csv"
    #: Every file the dissect stage writes.
    DISSECTION_FILES = (THRESHOLDS, TALLY, UNITS, TOP_IMAGES, SUMMARY, SENSITIVITY)
    FIVE_BAND = "five_band.csv"
    MAPS = "maps.npz"
    #: Every file the saliency stage writes (``SUMMARY`` is its summary.json too).
    SALIENCY_FILES = (FIVE_BAND, SUMMARY, MAPS)

    #: Every file the diffroar stage writes.
    DIFFROAR_FILES = (SUMMARY,)

    def model_file(self, model: Model) -> Path:
        """The trained weights (safetensors with an architecture header)."""
        return self.root / "models" / model.group.section / f"{model.key}.safetensors"

    def checkpoints(self, model: Model) -> Path:
        """The resumable training state (``last.pt``), persisted between runs."""
        return self.root / "checkpoints" / model.key

    def history(self, model: Model) -> Path:
        """Per-epoch training history (``dvc plots``)."""
        return self.root / "training" / f"{model.key}.csv"

    def metrics(self, model: Model) -> Path:
        """Top-1, top-5, NLL, ECE on val (``dvc metrics``)."""
        return self.root / "metrics" / f"{model.key}.json"

    def predictions(self, model: Model) -> Path:
        """Val logits and targets."""
        return self.root / "predictions" / f"{model.key}.npz"

    def dissection(self, model: Model, file: str | None = None) -> Path:
        """The model's dissection directory, or one of its files (``Layout.TALLY`` ...)."""
        directory = self.root / "dissection" / model.key
        return directory if file is None else directory / file

    def saliency(self, model: Model, file: str | None = None) -> Path:
        """The model's saliency directory, or one of its files (``Layout.FIVE_BAND``, ``Layout.SUMMARY``, ``Layout.MAPS``)."""
        directory = self.root / "saliency" / model.key
        return directory if file is None else directory / file

    def diffroar(self, model: Model, file: str | None = None) -> Path:
        """The model's DiffROAR directory, or one of its files (``Layout.SUMMARY``: per-k accuracies, DiffROAR)."""
        directory = self.root / "diffroar" / model.key
        return directory if file is None else directory / file

    @property
    def similarity(self) -> Path:
        """Class-similarity measures of every model (``dvc metrics``)."""
        return self.root / "metrics" / "similarity.json"

    @property
    def data_validation(self) -> Path:
        """Great Expectations results for the probe set and the concept world."""
        return self.root / "validation" / "data.json"

    @property
    def dissection_validation(self) -> Path:
        """Great Expectations results for every dissection table."""
        return self.root / "validation" / "dissection.json"


#: The module behind each DVC stage family; its import closure (:mod:`kdinterp.core.codedeps`) is the
#: stage's ``src`` deps in dvc.yaml and, for training, part of the resume fingerprint.
STAGE_MODULES: dict[str, str] = {
    "validate_data": "kdinterp.validation.data",
    "train": "kdinterp.stages.training",
    "evaluate": "kdinterp.measures.evaluation",
    "dissect": "kdinterp.measures.dissection",
    "saliency": "kdinterp.measures.saliency",
    "diffroar": "kdinterp.measures.diffroar",
    "validate": "kdinterp.validation.dissection",
    "similarity": "kdinterp.measures.similarity",
    "figures": "kdinterp.reporting.figures",
    "report": "kdinterp.reporting.report",
}
