"""The study's contract: which models exist, and where every output lives.

One owner for the facts that stages, validators, figures, the report and the tests all need:

* **Which models exist** (:func:`models`): every teacher once (with its own ``seed``), every
  student trained from labels, every distilled and every self-distilled student once per seed in
  ``params.seeds``, and every control (trained or not) once per seed in ``params.control_seeds``
  (:func:`seeds_of`). A :class:`Model` carries its name, group, seed,
  architecture, recipe, method, paper role, the model it distils from, and its DVC stage names.
  Students of one seed share their initialisation and data order (the seed fixes both), so their
  differences are paired.
* **The output layout** (:class:`Layout`): the files of the training stages, and the folder of each
  measure's outputs per model (the measures declare their own files: :mod:`kdinterp.measures`).

The method table (how a student is trained) is :mod:`kdinterp.training.methods`. This module imports
nothing heavy, so the CLI can validate a parameter file before loading torch. ``dvc.yaml`` spells
out the same layout for DVC; ``tests/test_study.py`` checks the two against each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdinterp.core.config import ParamsError
from kdinterp.core.errors import UnknownModelError
from kdinterp.core.params import ControlParams, DistilledParams, ModelParams, OptimParams, Params, StudentParams, TeacherParams

__all__ = ["ACTIVATION_GRID_FILE", "FIG1_FILE", "FIGURES_DIR", "FIGURE_FILES", "GRADIENT_GRID_FILE", "GROUPS", "IOU_PLOT",
           "PER_CATEGORY_FILE", "PLOT_TABLES", "PRETRAINED_DIR", "QUANTILE_PLOT", "REPRODUCTION_FILE", "ROLES",
           "ROTATION_ROLES",
           "SENSITIVITY_FILE", "TRAINING_PLOT", "Group", "Layout", "Model", "check", "find", "find_key", "models",
           "seeds_of"]

#: The paper's roles (``params.paper_models``), in the order of its Figure 1 after the teacher.
ROLES: tuple[str, ...] = ("teacher", "scratch", "kd", "ls")

#: The roles whose models the control ladder's rotated-basis rung reads (docs/instrument.md §3): only their
#: dissections run the calibrated detector in the rotated basis too (the rung's one use of it; ~3.5 s a model).
ROTATION_ROLES: tuple[str, ...] = ("scratch", "teacher")

#: The folder (relative to the repository root) of user-provided weights (``teachers.<name>.weights``).
#: Every ``train_teacher`` stage depends on it in dvc.yaml: a DVC dependency cannot be null, and a
#: trained teacher has no weights file, so the dependency is this always-present (committed) folder.
PRETRAINED_DIR = "pretrained"

#: The folder stage ``figures`` writes (committed), and its files; dvc.yaml lists the same (tests/test_study.py).
FIGURES_DIR = Path("paper_figures")
FIG1_FILE = "fig1_accuracy_detectors.png"
PER_CATEGORY_FILE = "fig_detectors_per_category.png"
SENSITIVITY_FILE = "fig_sensitivity.png"
ACTIVATION_GRID_FILE = "fig_activation_grid.png"
GRADIENT_GRID_FILE = "fig_loss_gradient_grid.png"
REPRODUCTION_FILE = "REPRODUCTION.md"
FIGURE_FILES: tuple[str, ...] = (FIG1_FILE, PER_CATEGORY_FILE, SENSITIVITY_FILE, ACTIVATION_GRID_FILE, GRADIENT_GRID_FILE,
                                 REPRODUCTION_FILE)

#: The plot-ready tables stage ``figures`` writes for ``dvc plots show`` (:meth:`Layout.plot_table`;
#: :mod:`kdinterp.reporting.dvc_plots`); dvc.yaml's figures outs and top-level ``plots:`` name the same (tests/test_plots.py).
TRAINING_PLOT = "training.csv"
IOU_PLOT = "detectors_vs_iou.csv"
QUANTILE_PLOT = "detectors_vs_quantile.csv"
PLOT_TABLES: tuple[str, ...] = (TRAINING_PLOT, IOU_PLOT, QUANTILE_PLOT)


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
        trained: False for controls: the train stage only writes their weights (an initialisation or
            a snapshot; no history, no checkpoints).
        snapshots: its train stage also writes the weights after each of ``student_recipe.snapshot_epochs``
            (:meth:`Layout.snapshots`; the students trained from labels): what controls of ``init:
            snapshot`` take.
        control: a control of the instrument (no paper role): its seeds are ``params.control_seeds``.
    """

    section: str
    kind: str
    train_stage: str
    per_seed: bool
    teacher_from: str | None = None
    trained: bool = True
    snapshots: bool = False
    control: bool = False


GROUPS: tuple[Group, ...] = (
    Group("teachers", "teacher", "train_teacher", per_seed=False),
    Group("students", "student", "train_student", per_seed=True, snapshots=True),
    Group("distilled", "distilled", "distill_student", per_seed=True, teacher_from="teachers"),
    Group("self_distilled", "self_distilled", "self_distill_student", per_seed=True, teacher_from="students"),
    Group("trained_controls", "trained_control", "train_control", per_seed=True, control=True),
    Group("controls", "control", "init_control", per_seed=True, trained=False, control=True),
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
        method: its key in :data:`kdinterp.training.methods.METHODS` (``ce`` for a control: the recipe it
            would be trained with).
        recipe: its own params entry.
        role: its paper role (``params.paper_models``), or None.
        teacher: the model it distils from (same seed for self-distillation), or None.
        source: for a control of ``init: snapshot``, the student (same seed) whose snapshot after
            ``recipe.epoch`` it is; else None.
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
    source: Model | None = None

    @property
    def imported(self) -> bool:
        """True for a teacher whose weights come from a user-provided file (``teachers.<name>.weights``)."""
        return getattr(self.recipe, "weights", None) is not None

    @property
    def key(self) -> str:
        """The DVC stage suffix and file stem: ``teacher`` for a teacher, ``scratch-0`` per seed."""
        return f"{self.name}-{self.seed}" if self.group.per_seed else self.name

    def stage(self, step: str) -> str:
        """The DVC stage of ``step`` for this model: ``train``, or a measure's stage (``evaluate``, ``dissect`` ...)."""
        prefix = self.group.train_stage if step == "train" else f"{step}_{self.group.kind}"
        return f"{prefix}@{self.key}"


def _roles(params: Params) -> dict[str, str]:
    return {name: role for role, name in params.paper_models.items()}


def models(params: Params) -> list[Model]:
    """Every model of the study, in params order: teachers, then each student group seed by seed.

    Returns:
        Teachers (one each), then for every seed of ``params.seeds``: the students, the distilled
        and the self-distilled students, and (a seed of ``params.control_seeds``) the trained and the
        untrained controls of that seed.

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
        if seed not in seeds_of(params, _GROUP["controls"]):
            continue
        for name, spec in params.trained_controls.items():
            out[name, seed] = Model(name, _GROUP["trained_controls"], seed, recipe.model, recipe.optim, "ce", spec,
                                    roles.get(name))
        for name, spec in params.controls.items():
            source = out[spec.student, seed] if spec.student is not None else None
            out[name, seed] = Model(name, _GROUP["controls"], seed, recipe.model, recipe.optim, "ce", spec,
                                    roles.get(name), source=source)
    return list(out.values())


def seeds_of(params: Params, group: Group) -> tuple[int, ...]:
    """The seeds of a per-seed ``group``'s models: ``params.control_seeds`` for a control group (``params.seeds``
    when that is null), else ``params.seeds``. (Teachers are not per seed: each has its own ``seed``.)"""
    if group.control and params.control_seeds is not None:
        return params.control_seeds
    return params.seeds


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


def find_key(params: Params, key: str) -> Model:
    """The model whose :attr:`Model.key` is ``key`` (``teacher``, ``scratch-0``).

    Raises:
        UnknownModelError: no such model; the message lists the models.
    """
    every = models(params)
    for model in every:
        if model.key == key:
            return model
    raise UnknownModelError(f"no model '{key}' in params.yaml ({', '.join(m.key for m in every)})")


def check(params: Params) -> None:
    """Cross-checks the params schema cannot express: names, seeds, teachers, roles.

    The distillation methods and their options are checked by :func:`kdinterp.training.methods.check`.

    Raises:
        ParamsError: the message names the dotted key and the fix.
    """
    if not params.seeds or len(set(params.seeds)) != len(params.seeds):
        raise ParamsError(f"seeds: give one or more distinct seeds, got {list(params.seeds)}")
    controls = params.control_seeds
    if controls is not None and (len(set(controls)) != len(controls) or not set(controls) <= set(params.seeds)):
        raise ParamsError(f"control_seeds: give distinct seeds among seeds {list(params.seeds)} (a control is paired "
                          f"with the students of its seed), got {list(controls)}")
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
    _check_snapshot_controls(params)
    for role, name in params.paper_models.items():
        if role not in ROLES:
            raise ParamsError(f"paper_models.{role}: unknown role; roles are {', '.join(ROLES)}")
        if name not in seen:
            raise ParamsError(f"paper_models.{role}: '{name}' is not a model defined in params.yaml")


def _check_snapshot_controls(params: Params) -> None:
    """A control of ``init: snapshot`` names a student trained from labels and one of its snapshot epochs.

    Raises:
        ParamsError: ``controls.<name>.student`` is not a key of ``students`` (distilled students write
            no snapshots), or ``controls.<name>.epoch`` is not in ``student_recipe.snapshot_epochs``.
    """
    epochs = list(params.student_recipe.snapshot_epochs)
    for name, spec in params.controls.items():
        if spec.init != "snapshot":
            continue
        if spec.student not in params.students:
            raise ParamsError(f"controls.{name}.student: '{spec.student}' is not one of students: "
                              f"{sorted(params.students)} (only students trained from labels write snapshots)")
        if spec.epoch not in epochs:
            raise ParamsError(f"controls.{name}.epoch: {spec.epoch} is not in student_recipe.snapshot_epochs "
                              f"{epochs}; add it there (the students then write that snapshot) or pick one of them")


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


# --------------------------------------------------------------------------- the output layout

@dataclass(frozen=True)
class Layout:
    """Where every stage output lives, under ``root`` (``outputs/``); ``dvc.yaml`` spells out the same paths.

    Per model (``key`` = :attr:`Model.key`): ``models/<section>/<key>.safetensors`` (the weights),
    ``snapshots/<key>/epoch-<e>.safetensors`` (a student's weights along training), ``training/<key>.csv``
    (the history), ``training/<key>.env.json`` (the environment that
    trained it), ``checkpoints/<key>/`` (resume state), and ``<measure>/<key>/<file>`` for every
    file of every measure (:mod:`kdinterp.measures.registry`), ``metrics/<key>.json`` (the headline metrics).
    Study-wide: ``validation/data.json``, ``validation/dissection.json``, ``plots/<name>`` (the plot tables).
    """

    root: Path = Path("outputs")

    def model_file(self, model: Model) -> Path:
        """The trained weights (safetensors with an architecture header)."""
        return self.root / "models" / model.group.section / f"{model.key}.safetensors"

    def snapshots(self, model: Model) -> Path:
        """The folder of a student's weights along training (one DVC output of its train stage):
        ``snapshots/<key>/``, holding :meth:`snapshot` for each of ``student_recipe.snapshot_epochs``."""
        return self.root / "snapshots" / model.key

    def snapshot(self, model: Model, epoch: int) -> Path:
        """The student's weights after ``epoch`` (1-based): safetensors with the header of a model file."""
        return self.snapshots(model) / f"epoch-{epoch}.safetensors"

    def checkpoints(self, model: Model) -> Path:
        """The resumable training state (``last.pt``), persisted between runs."""
        return self.root / "checkpoints" / model.key

    def history(self, model: Model) -> Path:
        """Per-epoch training history (``dvc plots``)."""
        return self.root / "training" / f"{model.key}.csv"

    def environment(self, model: Model) -> Path:
        """The environment that wrote the weights (CPU, threads, library versions): JSON, committed."""
        return self.root / "training" / f"{model.key}.env.json"

    def measure(self, measure: str, model: Model | None, file: str | None = None) -> Path:
        """The folder of ``measure``'s outputs for ``model`` (None: a study-wide measure), or one of its files."""
        directory = self.root / measure / (model.key if model is not None else "")
        return directory if file is None else directory / file

    @property
    def headline_dir(self) -> Path:
        """The folder of every model's headline metrics, ``metrics/`` (dvc.yaml's one ``metrics`` output)."""
        return self.root / "metrics"

    def headline(self, model: Model) -> Path:
        """``model``'s headline metrics, ``metrics/<key>.json`` (written by :mod:`kdinterp.reporting.headline`)."""
        return self.headline_dir / f"{model.key}.json"

    def plot_table(self, name: str) -> Path:
        """A plot-ready table of stage ``figures`` for ``dvc plots show`` (``plots/<name>``, one of :data:`PLOT_TABLES`)."""
        return self.root / "plots" / name

    @property
    def data_validation(self) -> Path:
        """Great Expectations results for the probe set and the concept world."""
        return self.root / "validation" / "data.json"

    @property
    def dissection_validation(self) -> Path:
        """Great Expectations results for every dissection table."""
        return self.root / "validation" / "dissection.json"
