"""Stage ``validate_data``: Great Expectations checks on the data, run before any model is dissected.

:func:`validate_data` runs :func:`kdinterp.validation.world.validate_world` (when the data is a
concept world), :func:`kdinterp.validation.probe.validate_broden` on the probe set, and
:func:`kdinterp.validation.probe.probe_files_report` (every file decoded by the dissection's own
reader), and writes one JSON report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kdinterp.core.io import write_json
from kdinterp.validation.expectations import TableReport, ValidationError, gx_version
from kdinterp.validation.probe import probe_files_report, validate_broden
from kdinterp.validation.world import min_concept_images, validate_world

__all__ = ["BALANCE_TOLERANCE", "MIN_CONCEPT_SHARE", "validate_data"]

#: Default share of probe images that must show each concept (``--min-concept-share``).
MIN_CONCEPT_SHARE = 0.01
#: Default largest relative deviation of a class's image count from the mean (``--balance-tolerance``).
BALANCE_TOLERANCE = 0.05


def validate_data(
    broden_dir: Path,
    categories: Sequence[str],
    report_path: Path,
    *,
    world_dir: Path | None = None,
    max_coverage: float,
    quantile: float | None = None,
    batch_size: int | None = None,
    min_concept_share: float = MIN_CONCEPT_SHARE,
    balance_tolerance: float = BALANCE_TOLERANCE,
    raise_on_failure: bool = True,
) -> bool:
    """Validate the probe set (and the concept world) and write one JSON report (stage validate_data).

    The report, written atomically even when validation fails, holds overall ``success``, the GX
    version, the world directory (null when skipped), the thresholds and, per table: ``path``,
    ``success``, ``evaluated_expectations``, ``successful_expectations`` and ``failures`` (as
    :func:`kdinterp.validation.dissection.validate_dissections` writes them).

    Args:
        broden_dir: the Broden-layout probe directory (``dissection.broden_dir``).
        categories: the selected categories (``dissection.categories``).
        report_path: where the JSON report goes.
        world_dir: the concept world directory, or None when the data is not a concept world. When
            ``broden_dir`` is its ``probe/``, the probe set is validated once (with every category).
        max_coverage: largest share of probe pixels one concept may cover (world only).
        quantile: ``dissection.quantile``: the probe set must hold enough images with data for it
            (:func:`kdinterp.dissection.probe_format.minimum_probe_images`, as ``dissect`` requires).
        batch_size: ``dissection.batch_size``: with ``quantile``, the probe bootstrap's two batches too.
        min_concept_share: every concept must appear in ``floor(share * probe images)`` probe
            images (world only; see :func:`min_concept_images`).
        balance_tolerance: largest relative deviation of a class's image count from the mean
            (world only).
        raise_on_failure: raise :class:`ValidationError` (after writing the report) instead of
            returning False.

    Returns:
        True when every table passed.

    Raises:
        MissingTableError: a table file is missing (nothing validated, no report).
        ValidationError: a file cannot be parsed, or validation failed and ``raise_on_failure``.
    """
    broden_dir = Path(broden_dir)
    reports: list[TableReport] = []
    thresholds = None
    if world_dir is not None:
        needed = min_concept_images(world_dir, min_concept_share)
        thresholds = {"max_coverage": max_coverage, "min_concept_share": min_concept_share,
                      "min_concept_images": needed, "balance_tolerance": balance_tolerance}
        reports += validate_world(world_dir, min_concept_images=needed, max_coverage=max_coverage,
                                  balance_tolerance=balance_tolerance)
    if world_dir is None or broden_dir.resolve() != (Path(world_dir) / "probe").resolve():
        reports += validate_broden(broden_dir, categories)
    reports.append(probe_files_report(broden_dir, categories, quantile, batch_size))
    success = all(report.success for report in reports)
    write_json(report_path, {
        "success": success,
        "great_expectations_version": gx_version(),
        "broden_dir": str(broden_dir),
        "categories": list(categories),
        "world_dir": None if world_dir is None else str(world_dir),
        "thresholds": thresholds,
        "tables": [report.to_json() for report in reports],
    })  # fmt: skip
    if not success and raise_on_failure:
        raise ValidationError.from_reports(reports, "data tables", report_path)
    return success
