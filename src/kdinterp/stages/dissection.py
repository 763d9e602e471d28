"""Stage ``dissect_*@``: Network Dissection of one model, written as tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdinterp import dissection
from kdinterp.broden import BrodenDataset, load_broden
from kdinterp.data import normalize
from kdinterp.io import atomic_path, write_json
from kdinterp.models import load_model
from kdinterp.params import Params
from kdinterp.progress import log
from kdinterp.stages.common import model_spec, resolve_device

__all__ = ["dissect_model"]


def dissect_model(params: Params, name: str, model_path: Path, out_dir: Path) -> dict:
    """Stage ``dissect@<name>``: Network Dissection of ``dissection.layer``.

    Writes under ``out_dir``: ``thresholds.npy`` (``(U,)`` float64), ``tally.csv``, ``units.csv``,
    ``summary.json`` (:mod:`kdinterp.dissection.tables`) and ``top_images.npz``
    (:class:`kdinterp.dissection.TopImagesResult`: ``image_index (U, k)`` int64 into the reader's
    rows, ``max_activation (U, k)`` float32, ``maps (U, k, h, w)`` float32).
    """
    spec = params.dissection
    model, _ = load_model(model_path, model_spec(params, name))
    broden = load_broden(spec.broden_dir, spec.categories)
    dataset = BrodenDataset(broden, normalize(params.data))
    result = dissection.dissect(model, spec.layer, dataset, quantile=spec.quantile, batch_size=spec.batch_size,
                                device=resolve_device(spec.device), num_workers=params.data.num_workers,
                                quantile_convention=spec.quantile_convention,
                                activation_rule=spec.activation_rule, top_images=spec.top_images)
    units = dissection.units_table(result, spec.iou_threshold)
    report = dissection.summary(units, result, quantile=spec.quantile, iou_threshold=spec.iou_threshold, model=name)
    with atomic_path(out_dir / "thresholds.npy") as tmp:
        np.save(tmp, result.thresholds)
    with atomic_path(out_dir / "tally.csv") as tmp:
        dissection.tally_table(result).to_csv(tmp, index=False)
    with atomic_path(out_dir / "units.csv") as tmp:
        units.to_csv(tmp, index=False)
    with atomic_path(out_dir / "top_images.npz") as tmp, open(tmp, "wb") as f:
        result.top_images.save(f)
    write_json(out_dir / "summary.json", report)
    log(f"{name}: {report['num_detectors']}/{report['num_units']} units are detectors covering "
        f"{report['num_unique_concepts']} concepts (IoU >= {spec.iou_threshold}); {report['detectors']}")
    return report
