"""Stages ``validate_data`` and ``validate``: Great Expectations on the data before any model, and on the dissection tables.

The suites are :mod:`kdinterp.validation`; this module assembles their inputs from params.yaml and
the output layout. Both stages fail (exit 1 with one line) when a suite fails, after writing their
report, so that bad data stops the dissection and a bad table stops the figures.
"""

from __future__ import annotations

from pathlib import Path

from kdinterp.core import study
from kdinterp.core.params import Params
from kdinterp.measures import dissection

__all__ = ["validate_data_stage", "validate_dissections_stage"]


def validate_data_stage(params: Params, broden: Path, report: Path, world: Path | None, *, min_concept_share: float,
                        balance_tolerance: float, max_coverage: float | None) -> bool:
    """Stage ``validate_data``: the probe set, and the concept world when ``data.world_file`` is set.

    Args:
        params: the run's parameters.
        broden: the Broden-layout probe directory (``dissection.broden_dir``).
        report: the JSON report to write (``outputs/validation/data.json``).
        world: the concept world's folder (default: the folder of ``data.world_file``).
        min_concept_share: every concept in at least ``floor(share x probe images)`` probe images.
        balance_tolerance: largest relative deviation of a class's image count from the mean.
        max_coverage: largest share of probe pixels per concept (default: quantile / IoU threshold).

    Returns:
        Whether the world's checks ran (False when ``data.world_file`` is null).

    Raises:
        ValidationError: a suite failed (after the report is written), or ``world`` is not the folder
            of ``data.world_file``.
    """
    from kdinterp.validation.data import validate_data
    from kdinterp.validation.dissection import ValidationError

    world_file = params.data.world_file
    world_dir = None if not world_file else world if world is not None else Path(world_file).parent
    if world_dir is not None and Path(world_file).parent.resolve() != world_dir.resolve():
        raise ValidationError(f"--world {world_dir} is not the directory of data.world_file ({world_file}); pass the "
                              "concept world that the data comes from")
    spec = params.dissection
    bound = round(spec.quantile / spec.iou_threshold, 12) if max_coverage is None else max_coverage
    validate_data(broden, spec.categories, report, world_dir=world_dir, max_coverage=bound,
                  quantile=spec.quantile, batch_size=spec.batch_size, min_concept_share=min_concept_share,
                  balance_tolerance=balance_tolerance)
    return world_dir is not None


def validate_dissections_stage(params: Params, layout: study.Layout) -> None:
    """Stage ``validate``: every model's dissection tables, into ``layout.dissection_validation``.

    Raises:
        ValidationError: a table failed its suite (after the report is written).
        MissingTableError: a table is missing.
    """
    from kdinterp.validation.dissection import validate_dissections

    folders = [layout.measure(dissection.MEASURE.name, model) for model in study.models(params)]
    validate_dissections(folders, layout.dissection_validation, raise_on_failure=True)
