"""Stage ``dissect_*@``: Network Dissection of one model, written as tables."""

from __future__ import annotations

import numpy as np

from kdinterp import dissection
from kdinterp.broden import BrodenDataset, load_broden
from kdinterp.data import normalize
from kdinterp.io import atomic_path, write_json
from kdinterp.models import load_model
from kdinterp.params import Params
from kdinterp.progress import log
from kdinterp.runtime import configure_torch
from kdinterp.stages.common import resolve_device
from kdinterp.study import Layout, Model

__all__ = ["dissect_model"]


def dissect_model(params: Params, model: Model, layout: Layout) -> dict:
    """Stage ``dissect_*@<key>``: Network Dissection of ``dissection.layer``.

    Writes under ``layout.dissection(model)``: ``thresholds.npy`` (``(U,)`` float64), ``tally.csv``, ``units.csv``,
    ``summary.json`` (:mod:`kdinterp.dissection.tables`) and ``top_images.npz``
    (:class:`kdinterp.dissection.TopImagesResult`: ``image_index (U, k)`` int64 into the reader's
    rows, ``max_activation (U, k)`` float32, ``maps (U, k, h, w)`` float32).
    """
    configure_torch()
    spec = params.dissection
    net, _ = load_model(layout.model_file(model), model.arch)
    broden = load_broden(spec.broden_dir, spec.categories)
    dataset = BrodenDataset(broden, normalize(params.data))
    result = dissection.dissect(net, spec.layer, dataset, quantile=spec.quantile, batch_size=spec.batch_size,
                                device=resolve_device(spec.device), num_workers=params.data.num_workers,
                                quantile_convention=spec.quantile_convention,
                                activation_rule=spec.activation_rule, top_images=spec.top_images)
    units = dissection.units_table(result, spec.iou_threshold)
    report = dissection.summary(units, result, quantile=spec.quantile, iou_threshold=spec.iou_threshold,
                                model=model.name, seed=model.seed)
    with atomic_path(layout.dissection(model, Layout.THRESHOLDS)) as tmp:
        np.save(tmp, result.thresholds)
    with atomic_path(layout.dissection(model, Layout.TALLY)) as tmp:
        dissection.tally_table(result).to_csv(tmp, index=False)
    with atomic_path(layout.dissection(model, Layout.UNITS)) as tmp:
        units.to_csv(tmp, index=False)
    with atomic_path(layout.dissection(model, Layout.TOP_IMAGES)) as tmp, open(tmp, "wb") as f:
        result.top_images.save(f)
    write_json(layout.dissection(model, Layout.SUMMARY), report)
    log(f"{model.key}: {report['num_detectors']}/{report['num_units']} units are detectors covering "
        f"{report['num_unique_concepts']} concepts (IoU >= {spec.iou_threshold}); {report['detectors']}")
    return report
