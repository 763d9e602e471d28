"""Stage ``similarity``: class-similarity information in every model's validation outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kdinterp import similarity
from kdinterp.data import class_names
from kdinterp.io import read_json, write_json
from kdinterp.params import Params

__all__ = ["similarity_report"]


def similarity_report(params: Params, predictions: dict[str, Path], out: Path) -> dict:
    """Stage ``similarity``: within-class entropy, teacher agreement and same-type mass for every model."""
    classes = class_names(params.data)
    matrices = {}
    for name, path in predictions.items():
        with np.load(path) as saved:
            matrices[name] = similarity.class_mean_probs(torch.from_numpy(saved["logits"]),
                                                         torch.from_numpy(saved["targets"]), len(classes))
    groups = _class_groups(params, classes)
    reference = params.paper_models.get("teacher")
    report: dict = {"entropy_unit": "nats", "reference_teacher": reference, "models": {}}
    if groups:
        report["same_type_mass_chance"] = similarity.chance_same_group_mass(groups)
    for name, matrix in matrices.items():
        entry = {"within_class_entropy": similarity.within_class_entropy(matrix)}
        if reference in matrices and name != reference:
            entry["teacher_agreement"] = similarity.similarity_agreement(matrices[reference], matrix)
        if groups:
            entry["same_type_mass"] = similarity.same_group_mass(matrix, groups)
        report["models"][name] = entry
    write_json(out, report)
    return report


def _class_groups(params: Params, classes: list[str]) -> list[str] | None:
    """Object type of each class, from the concept world's description (None for other data)."""
    if not params.data.world_file:
        return None
    by_name = {c["name"]: c["object_type"] for c in read_json(params.data.world_file)["classes"]}
    return [by_name[c] for c in classes]
