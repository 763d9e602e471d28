"""The ``kdinterp`` command: one thin command per DVC stage.

Every command parses its options, loads ``params.yaml`` and calls one function of
:mod:`kdinterp.stages` (or :mod:`kdinterp.validation.dissection`, :mod:`kdinterp.reporting.figures`, :mod:`kdinterp.reporting.report`).
Heavy libraries are imported inside the commands so that ``--help`` is instant.

One rule for errors, in one place (:class:`_Group`, the app's command group): a user error, i.e. a
:class:`kdinterp.core.errors.KdinterpError` (bad params, missing or malformed data, wrong or broken
checkpoints, non-finite values, failed validation) or a missing file, prints one line,
``error: <what, which file (and row or key), the fix>``, and exits with status 1; the stages write
their outputs atomically, so nothing partial is left. Any other exception is an internal bug and
keeps its traceback; ``kdinterp --debug COMMAND`` shows the traceback of user errors too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from kdinterp.core.errors import KdinterpError
from kdinterp.world.cli import app as world_app

#: What the CLI reports as a user error (one line, exit status 1) rather than a bug (a traceback).
USER_ERRORS: tuple[type[Exception], ...] = (KdinterpError, FileNotFoundError)


class _Group(TyperGroup):
    """The app's command group: turns a user error of any command into one line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as err:
            if ctx.params.get("debug"):
                raise
            typer.secho(f"error: {one_line(err)}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=1) from None


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (the lines of a multi-line message joined by '; ')."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return "; ".join(lines) or type(err).__name__


app = typer.Typer(help="kdinterp: knowledge distillation and interpretability, one command per DVC stage.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, cls=_Group)
app.add_typer(world_app, name="world")

Params = Annotated[Path, typer.Option("--params", help="The parameter file.")]
Name = Annotated[str, typer.Argument(
    help="Model name: a key of teachers/students/distilled/self_distilled/controls in params.yaml.")]
Seed = Annotated[int | None, typer.Option(help="The model's seed (one of params.yaml seeds; omit for a teacher).")]
Outputs = Annotated[Path, typer.Option(help="The outputs/ directory (the layout of kdinterp.core.study.Layout).")]
Out = Annotated[Path, typer.Option(help="Output file or directory (as declared in dvc.yaml).")]


@app.callback()
def _main(debug: Annotated[bool, typer.Option(
        "--debug", help="Show the traceback of a user error (bad input, params or checkpoint) instead of one line.")]
          = False) -> None:
    """Pin threads and numerics before any command imports torch (kdinterp.core.runtime).

    ``KDINTERP_PORTABLE=1`` also caps oneDNN and ATen at AVX2 (the same bytes on AVX2 and AVX-512 CPUs).
    ``--debug`` is read by :class:`_Group`.
    """
    import os

    from kdinterp.core.runtime import pin_environment

    pin_environment(portable=os.environ.get("KDINTERP_PORTABLE") == "1")


def _params(path: Path):
    """params.yaml, schema-checked and cross-checked against the study contract."""
    from kdinterp.core.config import ParamsError
    from kdinterp.core.params import load_params
    from kdinterp.core.study import check

    params = load_params(path)
    try:
        check(params)
    except ParamsError as err:
        raise ParamsError(f"{path}: {err}") from None
    return params


def _run_model(stage: Callable[..., object], path: Path, name: str, seed: int | None, outputs: Path) -> None:
    """Run a per-model stage function, ``stage(params, model, layout)``, on the study's model ``name`` at ``seed``."""
    from kdinterp.core.study import Layout, find

    params = _params(path)
    stage(params, find(params, name, seed), Layout(outputs))


@app.command()
def train(name: Name, seed: Seed = None, outputs: Outputs = Path("outputs"), params: Params = Path("params.yaml")) -> None:
    """Train model NAME at SEED: a teacher, a student, or a (self-)distilled student (stages train_*@, distill_*@)."""
    from kdinterp.stages.training import train as run

    _run_model(run, params, name, seed, outputs)


@app.command()
def evaluate(name: Name, seed: Seed = None, outputs: Outputs = Path("outputs"),
             params: Params = Path("params.yaml")) -> None:
    """Evaluate model NAME at SEED on the validation split (stage evaluate_*@)."""
    from kdinterp.measures.evaluation import evaluate_model

    _run_model(evaluate_model, params, name, seed, outputs)


@app.command()
def dissect(name: Name, seed: Seed = None, outputs: Outputs = Path("outputs"),
            params: Params = Path("params.yaml")) -> None:
    """Network Dissection of model NAME at SEED on the probe set (stage dissect_*@)."""
    from kdinterp.measures.dissection import dissect_model

    _run_model(dissect_model, params, name, seed, outputs)


@app.command()
def saliency(name: Name, seed: Seed = None, outputs: Outputs = Path("outputs"),
             params: Params = Path("params.yaml")) -> None:
    """Saliency maps of model NAME at SEED on the val images: five-band scores, object mass shares (stage saliency_*@)."""
    from kdinterp.measures.saliency import saliency_model

    _run_model(saliency_model, params, name, seed, outputs)


@app.command()
def diffroar(name: Name, seed: Seed = None, outputs: Outputs = Path("outputs"),
             params: Params = Path("params.yaml")) -> None:
    """DiffROAR of model NAME at SEED: an evaluator retrained on its top-k vs bottom-k pixels (stage diffroar_*@)."""
    from kdinterp.measures.diffroar import diffroar_model

    _run_model(diffroar_model, params, name, seed, outputs)


@app.command()
def validate(outputs: Outputs = Path("outputs"), params: Params = Path("params.yaml")) -> None:
    """Validate every model's dissection tables with Great Expectations (stage validate); exit 1 on failure."""
    from kdinterp.core import study
    from kdinterp.validation.dissection import validate_dissections

    layout = study.Layout(outputs)
    model_dirs = [layout.dissection(model) for model in study.models(_params(params))]
    validate_dissections(model_dirs, layout.dissection_validation, raise_on_failure=True)


@app.command("validate-data")
def validate_data(
    broden: Annotated[Path, typer.Option(help="The Broden-layout probe directory (dissection.broden_dir).")],
    report: Out,
    world: Annotated[Path | None, typer.Option(
        help="The concept world directory [default: the folder of data.world_file]; its checks run only when "
             "data.world_file is set (not null).")] = None,
    min_concept_share: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="World: every concept in at least floor(SHARE x probe images) probe images.")] = 0.01,
    balance_tolerance: Annotated[float, typer.Option(
        min=0.0, help="World: largest relative deviation of a class's image count from the mean.")] = 0.05,
    max_coverage: Annotated[float | None, typer.Option(
        help="World: largest share of probe pixels per concept [default: quantile / iou_threshold].")] = None,
    params: Params = Path("params.yaml"),
) -> None:
    """Validate the probe set and the concept world with Great Expectations (stage validate_data); exit 1 on failure."""
    from kdinterp.validation.dissection import ValidationError
    from kdinterp.validation.data import validate_data as run

    p = _params(params)
    world_dir = None if not p.data.world_file else world if world is not None else Path(p.data.world_file).parent
    if world_dir is not None and Path(p.data.world_file).parent.resolve() != world_dir.resolve():
        raise ValidationError(f"--world {world_dir} is not the directory of data.world_file "
                              f"({p.data.world_file}); pass the concept world that the data comes from")
    bound = round(p.dissection.quantile / p.dissection.iou_threshold, 12) if max_coverage is None else max_coverage
    run(broden, p.dissection.categories, report, world_dir=world_dir, max_coverage=bound,
        min_concept_share=min_concept_share, balance_tolerance=balance_tolerance)
    if world_dir is None:
        typer.echo("validate-data: concept world checks skipped (data.world_file is null)", err=True)


@app.command()
def similarity(outputs: Outputs = Path("outputs"), params: Params = Path("params.yaml")) -> None:
    """Class-similarity information in every model's outputs (stage similarity)."""
    from kdinterp.measures.similarity import similarity_report
    from kdinterp.core.study import Layout

    similarity_report(_params(params), Layout(outputs))


@app.command()
def figures(outputs: Outputs = Path("outputs"), out: Out = Path("paper_figures"),
            params: Params = Path("params.yaml")) -> None:
    """Draw the paper's figures and write REPRODUCTION.md (stage figures)."""
    from kdinterp.reporting.figures import make_figures
    from kdinterp.core.study import Layout

    make_figures(_params(params), Layout(outputs), out)


@app.command("dose-response")
def dose_response(outputs: Outputs = Path("outputs"),
                  out: Annotated[Path, typer.Option(help="Folder for the table, figure and README.")] = Path(
                      "docs/dose_response"),
                  params: Params = Path("params.yaml")) -> None:
    """Write the dose-response curve of a run of profiles/dose_response.yaml (not a DVC stage; run it by hand)."""
    from kdinterp.reporting.dose_response import write_dose_response
    from kdinterp.core.study import Layout

    command = (f"make repro PROFILE=dose_response && kdinterp dose-response --outputs {outputs} --out {out}"
               + ("" if params == Path("params.yaml") else f" --params {params}"))
    write_dose_response(_params(params), Layout(outputs), out, command)


@app.command()
def report(outputs: Outputs = Path("outputs"), out: Out = Path("outputs/report"),
           params: Params = Path("params.yaml")) -> None:
    """Write the HTML report: one page per model's units and a comparison page (stage report)."""
    from kdinterp.reporting.report import write_report
    from kdinterp.core.study import Layout

    write_report(_params(params), Layout(outputs), out)


@app.command()
def profile(name: Annotated[str, typer.Argument(help="A profile: profiles/NAME.yaml holds only what differs.")],
            params: Params = Path("params.yaml")) -> None:
    """Apply profile NAME to the parameter file: merge profiles/NAME.yaml's keys into it, keeping its comments."""
    from kdinterp.core.profiles import apply_profile

    changed = apply_profile(Path("profiles") / f"{name}.yaml", params)
    typer.echo(f"{params} <- profiles/{name}.yaml: {', '.join(changed) or 'nothing changed'} "
               f"(`git checkout {params}` goes back to the default)")


Remote = Annotated[str | None, typer.Option("--remote", "-r", help="A DVC remote name (default: core.remote).")]


@app.command()
def pull(remote: Remote = None,
         if_set: Annotated[bool, typer.Option("--if-set", help="Do nothing (exit 0) while the URL is the placeholder.")]
         = False) -> None:
    """Fetch the published study from the DVC remote (`make pull`); afterwards `dvc repro` runs no stage."""
    from kdinterp.core.remote import RemoteError, pull as pull_study, url_is_set

    if if_set and not url_is_set(Path.cwd(), remote):
        typer.echo("the DVC remote's URL is not set (.dvc/config.local): not pulling")
        return
    changed = pull_study(Path.cwd(), remote)
    if changed:
        raise RemoteError(f"after the pull, dvc repro would still run {len(changed)} stage(s): "
                          f"{', '.join(changed[:5])}; the remote holds another version of the study "
                          "(`git log dvc.lock`), or this checkout has local changes (`dvc status`)")
    typer.echo("pulled: every output is here and `dvc repro` has nothing to run")


@app.command()
def publish(remote: Remote = None) -> None:
    """Push data, models, dissections, the report and the run-cache to the DVC remote, then check it (`make publish`)."""
    from kdinterp.core.remote import publish as publish_study

    where = publish_study(Path.cwd(), remote)
    typer.echo(f"published to '{where.name}' ({where.url}): `dvc data status --not-in-remote` lists nothing")
