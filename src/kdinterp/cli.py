"""The ``kdinterp`` command: one thin command per DVC stage.

Every command parses its options, loads ``params.yaml`` and calls one function of
:mod:`kdinterp.stages` (or :mod:`kdinterp.validate`, :mod:`kdinterp.figures`, :mod:`kdinterp.report`).
Heavy libraries are imported inside the commands so that ``--help`` is instant. Known errors (bad
params, missing or malformed data, wrong checkpoints, NaN losses, failed validation) print one
readable message and exit with status 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from kdinterp.world.cli import app as world_app

app = typer.Typer(help="kdinterp: knowledge distillation and interpretability, one command per DVC stage.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(world_app, name="world")

Params = Annotated[Path, typer.Option("--params", help="The parameter file.")]
Name = Annotated[str, typer.Argument(help="Model name: a key of teachers/students/distilled in params.yaml.")]
Out = Annotated[Path, typer.Option(help="Output file or directory (as declared in dvc.yaml).")]


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Turn the package's known error types into a one-line message and exit status 1."""
    from kdinterp.broden import BrodenError
    from kdinterp.config import ParamsError
    from kdinterp.data import DataError
    from kdinterp.results import FiguresInputError
    from kdinterp.models import CheckpointError
    from kdinterp.report import ReportInputError
    from kdinterp.train import NonFiniteLossError
    from kdinterp.validate import ValidationError

    known = (BrodenError, CheckpointError, DataError, FiguresInputError, FileNotFoundError, NonFiniteLossError,
             ParamsError, ReportInputError, ValidationError)
    try:
        yield
    except known as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None


def _params(path: Path):
    from kdinterp.params import load_params

    return load_params(path)


@app.command("train-teacher")
def train_teacher(name: Name, out: Out, checkpoints: Out, history: Out, params: Params = Path("params.yaml")) -> None:
    """Train teacher NAME from labels (stage train_teacher@NAME)."""
    from kdinterp.stages import training

    with _errors():
        training.train_teacher(_params(params), name, out, checkpoints, history)


@app.command("train-student")
def train_student(name: Name, out: Out, checkpoints: Out, history: Out, params: Params = Path("params.yaml")) -> None:
    """Train student NAME from labels: cross-entropy or label smoothing (stage train_student@NAME)."""
    from kdinterp.stages import training

    with _errors():
        training.train_student(_params(params), name, out, checkpoints, history)


@app.command("distill-student")
def distill_student(name: Name, teacher: Annotated[Path, typer.Option(help="The teacher's model file.")],
                    out: Out, checkpoints: Out, history: Out, params: Params = Path("params.yaml")) -> None:
    """Train student NAME by knowledge distillation from TEACHER (stage distill_student@NAME)."""
    from kdinterp.stages import training

    with _errors():
        training.distill_student(_params(params), name, teacher, out, checkpoints, history)


@app.command()
def evaluate(name: Name, model: Annotated[Path, typer.Option(help="The model file.")], metrics: Out,
             predictions: Out, params: Params = Path("params.yaml")) -> None:
    """Evaluate model NAME on the validation split (stage evaluate_*@NAME)."""
    from kdinterp.stages import evaluation

    with _errors():
        evaluation.evaluate_model(_params(params), name, model, metrics, predictions)


@app.command()
def dissect(name: Name, model: Annotated[Path, typer.Option(help="The model file.")], out: Out,
            params: Params = Path("params.yaml")) -> None:
    """Network Dissection of model NAME on the probe set (stage dissect_*@NAME)."""
    from kdinterp.stages import dissection

    with _errors():
        dissection.dissect_model(_params(params), name, model, out)


@app.command()
def validate(dissections: Annotated[Path, typer.Option(help="Directory of <model>/ dissection outputs.")],
             report: Out, params: Params = Path("params.yaml")) -> None:
    """Validate every model's dissection tables with Great Expectations (stage validate); exit 1 on failure."""
    from kdinterp.validate import validate_dissections

    with _errors():
        model_dirs = [dissections / name for name in _params(params).model_names]
        validate_dissections(model_dirs, report, raise_on_failure=True)


@app.command("validate-data")
def validate_data(
    broden: Annotated[Path, typer.Option(help="The Broden-layout probe directory (dissection.broden_dir).")],
    report: Out,
    world: Annotated[Path | None, typer.Option(
        help="The concept world directory; its checks run only when data.world_file is set (not null).")] = None,
    min_concept_share: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="World: every concept in at least floor(SHARE x probe images) probe images.")] = 0.01,
    balance_tolerance: Annotated[float, typer.Option(
        min=0.0, help="World: largest relative deviation of a class's image count from the mean.")] = 0.05,
    max_coverage: Annotated[float | None, typer.Option(
        help="World: largest share of probe pixels per concept [default: quantile / iou_threshold].")] = None,
    params: Params = Path("params.yaml"),
) -> None:
    """Validate the probe set and the concept world with Great Expectations (stage validate_data); exit 1 on failure."""
    from kdinterp.validate import ValidationError
    from kdinterp.validate_data import validate_data as run

    with _errors():
        p = _params(params)
        world_dir = world if world is not None and p.data.world_file else None
        if world_dir is not None and Path(p.data.world_file).parent.resolve() != world_dir.resolve():
            raise ValidationError(f"--world {world_dir} is not the directory of data.world_file "
                                  f"({p.data.world_file}); pass the concept world that the data comes from")
        bound = round(p.dissection.quantile / p.dissection.iou_threshold, 12) if max_coverage is None else max_coverage
        run(broden, p.dissection.categories, report, world_dir=world_dir, max_coverage=bound,
            min_concept_share=min_concept_share, balance_tolerance=balance_tolerance)
        if world_dir is None:
            typer.echo("validate-data: concept world checks skipped (no --world, or data.world_file is null)", err=True)


@app.command()
def similarity(predictions: Annotated[Path, typer.Option(help="Directory of <model>.npz val logits.")],
               out: Out, params: Params = Path("params.yaml")) -> None:
    """Class-similarity information in every model's outputs (stage similarity)."""
    from kdinterp.stages.similarity import similarity_report

    with _errors():
        p = _params(params)
        similarity_report(p, {name: predictions / f"{name}.npz" for name in p.model_names}, out)


@app.command()
def figures(outputs: Annotated[Path, typer.Option(help="The outputs/ directory of the pipeline.")],
            out: Out, params: Params = Path("params.yaml")) -> None:
    """Draw the paper's figures and write REPRODUCTION.md (stage figures)."""
    from kdinterp.figures import make_figures

    with _errors():
        make_figures(_params(params), outputs, out)


@app.command()
def report(dissections: Annotated[Path, typer.Option(help="Directory of <model>/ dissection outputs.")],
           out: Out, params: Params = Path("params.yaml")) -> None:
    """Write the HTML report: one page per model's units and a comparison page (stage report)."""
    from kdinterp.report import write_report

    with _errors():
        write_report(_params(params), dissections, out)
