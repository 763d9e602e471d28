"""The ``kdinterp`` command: one thin command per DVC stage.

Every command parses its options, loads ``params.yaml`` (:func:`kdinterp.measures.registry.load_params`)
and calls one function: a stage entry point of :mod:`kdinterp.stages`, or a measure's ``run``, one
command per measure of the registry (:data:`kdinterp.measures.registry.MEASURES`).
Heavy libraries are imported inside the commands so that ``--help`` is instant.

One rule for errors, in one place (:class:`_Group`, the app's command group): a user error, i.e. a
:class:`kdinterp.core.errors.KdinterpError` (bad params, missing or malformed data, wrong or broken
checkpoints, non-finite values, failed validation, an output that cannot be written), a missing file or a
fault of the machine (a full disk, no permission: :func:`kdinterp.core.errors.environment_fault`) prints one line,
``error: <what, which file (and row or key), the fix>``, and exits with status 1; the stages write
their outputs atomically, so nothing partial is left. Every command, ``kdinterp world ...`` included, goes
through this one place; none catches errors of its own. Any other exception is an internal bug and
keeps its traceback; ``kdinterp --debug COMMAND`` shows the traceback of user errors too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from kdinterp.core.errors import KdinterpError, environment_fault
from kdinterp.world.cli import app as world_app

#: What the CLI reports as a user error (one line, exit status 1) rather than a bug (a traceback).
USER_ERRORS: tuple[type[Exception], ...] = (KdinterpError, FileNotFoundError)


class _Group(TyperGroup):
    """The app's command group: turns a user error of any command into one line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as err:
            message = user_error(err)
            if message is None or ctx.params.get("debug"):
                raise
            typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=1) from None


def user_error(err: BaseException) -> str | None:
    """The one-line message of a user error, or ``None`` for a bug (which keeps its traceback).

    User errors are :data:`USER_ERRORS` and the ``OSError`` s of the machine that
    :func:`kdinterp.core.errors.environment_fault` names (full disk, no permission, a file where a folder belongs).
    """
    if isinstance(err, USER_ERRORS):
        return one_line(err)
    if isinstance(err, OSError) and (fault := environment_fault(err)) is not None:
        return one_line(fault)
    return None


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (the lines of a multi-line message joined by '; ')."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return "; ".join(lines) or type(err).__name__


app = typer.Typer(help="kdinterp: knowledge distillation and interpretability, one command per DVC stage.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, cls=_Group)
app.add_typer(world_app, name="world")

Params = Annotated[Path, typer.Option("--params", help="The parameter file.")]
ModelArg = Annotated[str, typer.Argument(
    metavar="MODEL", help="A model key (scratch-0, teacher: a DVC stage's suffix), or a model name with --seed.")]
Seed = Annotated[int | None, typer.Option(help="With a model name: its seed (one of params.yaml seeds).")]
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
    """params.yaml with every measure's section, schema-checked and cross-checked against the study contract."""
    from kdinterp.measures.registry import load_params

    return load_params(path)


def _model(params, model: str, seed: int | None):
    """The study model named by a key (``scratch-0``, ``teacher``) or by a name and ``--seed``."""
    from kdinterp.core import study

    return study.find(params, model, seed) if seed is not None else study.find_key(params, model)


@app.command()
def train(model: ModelArg, seed: Seed = None, outputs: Outputs = Path("outputs"),
          params: Params = Path("params.yaml")) -> None:
    """Train MODEL: a teacher, a student, or a (self-)distilled student (stages train_*@, distill_*@, init_control@)."""
    from kdinterp.core.study import Layout
    from kdinterp.stages.training import train as run

    p = _params(params)
    run(p, _model(p, model, seed), Layout(outputs))


def _measure_command(measure) -> Callable[..., None]:
    """The CLI command of a per-model measure of the registry: ``kdinterp <stage> MODEL``."""
    def command(model: ModelArg, seed: Seed = None, outputs: Outputs = Path("outputs"),
                params: Params = Path("params.yaml")) -> None:
        from kdinterp.core.study import Layout

        p = _params(params)
        measure.run(p, _model(p, model, seed), Layout(outputs))

    command.__doc__ = f"{measure.help} (stage {measure.stage}_*@)"
    return command


def _study_command(measure) -> Callable[..., None]:
    """The CLI command of a study-wide measure of the registry: ``kdinterp <stage>``."""
    def command(outputs: Outputs = Path("outputs"), params: Params = Path("params.yaml")) -> None:
        from kdinterp.core.study import Layout

        measure.run(_params(params), Layout(outputs))

    command.__doc__ = f"{measure.help} (stage {measure.stage})"
    return command


def _add_measure_commands() -> None:
    from kdinterp.measures.registry import MEASURES

    for measure in MEASURES:
        factory = _measure_command if measure.per_model else _study_command
        app.command(measure.stage)(factory(measure))


_add_measure_commands()


@app.command()
def validate(outputs: Outputs = Path("outputs"), params: Params = Path("params.yaml")) -> None:
    """Validate every model's dissection tables with Great Expectations (stage validate); exit 1 on failure."""
    from kdinterp.core.study import Layout
    from kdinterp.stages.validate import validate_dissections_stage

    validate_dissections_stage(_params(params), Layout(outputs))


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
    from kdinterp.stages.validate import validate_data_stage

    if not validate_data_stage(_params(params), broden, report, world, min_concept_share=min_concept_share,
                               balance_tolerance=balance_tolerance, max_coverage=max_coverage):
        typer.echo("validate-data: concept world checks skipped (data.world_file is null)", err=True)


@app.command()
def figures(outputs: Outputs = Path("outputs"), out: Out = Path("paper_figures"),
            params: Params = Path("params.yaml")) -> None:
    """Draw the paper's figures, write REPRODUCTION.md and the headline metrics outputs/metrics/ (stage figures)."""
    from kdinterp.core.study import Layout
    from kdinterp.stages.figures import make_figures

    make_figures(_params(params), Layout(outputs), out)


@app.command("dose-response")
def dose_response(outputs: Outputs = Path("outputs"),
                  out: Annotated[Path, typer.Option(help="Folder for the table, figure and README.")] = Path(
                      "docs/dose_response"),
                  params: Params = Path("params.yaml")) -> None:
    """Write the dose-response curve of a run of profiles/dose_response.yaml (not a DVC stage; run it by hand)."""
    from kdinterp.core.study import Layout
    from kdinterp.reporting.dose_response import write_dose_response

    command = (f"make repro PROFILE=dose_response && kdinterp dose-response --outputs {outputs} --out {out}"
               + ("" if params == Path("params.yaml") else f" --params {params}"))
    write_dose_response(_params(params), Layout(outputs), out, command)


@app.command()
def report(outputs: Outputs = Path("outputs"), out: Out = Path("outputs/report"),
           params: Params = Path("params.yaml")) -> None:
    """Write the HTML report: one page per model's units and a comparison page (stage report)."""
    from kdinterp.core.study import Layout
    from kdinterp.stages.report import write_report

    write_report(_params(params), Layout(outputs), out)


@app.command()
def profile(name: Annotated[str, typer.Argument(help="A profile: profiles/NAME.yaml holds only what differs.")],
            params: Params = Path("params.yaml")) -> None:
    """Apply profile NAME to the parameter file: merge profiles/NAME.yaml's keys into it, keeping its comments."""
    from kdinterp.workflow.profiles import apply_profile

    changed = apply_profile(Path("profiles") / f"{name}.yaml", params)
    typer.echo(f"{params} <- profiles/{name}.yaml: {', '.join(changed) or 'nothing changed'} "
               f"(`git checkout {params}` goes back to the default)")


@app.command("repair-lock")
def repair_lock() -> None:
    """Mend what an interrupted `dvc repro` leaves (an empty dvc.lock, dead processes in DVC's rwlock), and drop
    dvc.lock entries of stages dvc.yaml no longer defines (`make repro`)."""
    from kdinterp.workflow.lockfile import prune_rwlock, prune_stale_stages
    from kdinterp.workflow.lockfile import repair_lock as repair

    for done in (repair(Path.cwd()), prune_rwlock(Path.cwd()), prune_stale_stages(Path.cwd())):
        if done is not None:
            typer.echo(done, err=True)


Remote = Annotated[str | None, typer.Option("--remote", "-r", help="A DVC remote name (default: core.remote).")]


@app.command()
def pull(remote: Remote = None,
         if_set: Annotated[bool, typer.Option("--if-set", help="Do nothing (exit 0) while the URL is the placeholder.")]
         = False) -> None:
    """Fetch the published study from the DVC remote (`make pull`); afterwards `dvc repro` runs no stage."""
    from kdinterp.workflow.remote import RemoteError, url_is_set
    from kdinterp.workflow.remote import pull as pull_study

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
    from kdinterp.workflow.remote import publish as publish_study

    where = publish_study(Path.cwd(), remote)
    typer.echo(f"published to '{where.name}' ({where.url}): `dvc data status --not-in-remote` lists nothing")
