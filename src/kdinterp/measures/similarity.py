"""Stage ``similarity``: class-similarity information in every model's validation outputs."""

from __future__ import annotations

import numpy as np
import torch

from kdinterp.measures import class_similarity
from kdinterp.training.data import class_names
from kdinterp.core.io import read_json, write_json
from kdinterp.core.params import Params
from kdinterp.core.study import Layout, models

__all__ = ["similarity_report"]


def similarity_report(params: Params, layout: Layout) -> dict:
    """Stage ``similarity``: within-class entropy, teacher agreement and same-type mass for every model.

    Reads ``layout.predictions(model)`` of every model of the study and writes ``layout.similarity``:
    ``models: {model.key: {within_class_entropy, nontarget_entropy (nats), teacher_agreement, same_type_mass}}``
    (:mod:`kdinterp.measures.class_similarity`); teacher
    agreement is measured against the paper-role teacher (``reference_teacher``, its key).
    """
    classes = class_names(params.data)
    matrices = {}
    for model in models(params):
        with np.load(layout.predictions(model)) as saved:
            matrices[model.key] = class_similarity.class_mean_probs(torch.from_numpy(saved["logits"]),
                                                              torch.from_numpy(saved["targets"]), len(classes))
    groups = _class_groups(params, classes)
    teacher = params.paper_models.get("teacher")
    reference = next((m.key for m in models(params) if m.name == teacher), None)
    report: dict = {"entropy_unit": "nats", "reference_teacher": reference, "models": {}}
    if groups:
        report["same_type_mass_chance"] = class_similarity.chance_same_group_mass(groups)
    for name, matrix in matrices.items():
        entry = {"within_class_entropy": class_similarity.within_class_entropy(matrix),
                 "nontarget_entropy": class_similarity.nontarget_entropy(matrix)}
        if reference in matrices and name != reference:
            entry["teacher_agreement"] = class_similarity.similarity_agreement(matrices[reference], matrix)
        if groups:
            entry["same_type_mass"] = class_similarity.same_group_mass(matrix, groups)
        report["models"][name] = entry
    write_json(layout.similarity, report)
    return report


def _class_groups(params: Params, classes: list[str]) -> list[str] | None:
    """Object type of each class, from the concept world's description (None for other data)."""
    if not params.data.world_file:
        return None
    by_name = {c["name"]: c["object_type"] for c in read_json(params.data.world_file)["classes"]}
    return [by_name[c] for c in classes]
