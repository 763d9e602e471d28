"""Stage ``similarity``: class-similarity information in every model's validation outputs."""

from __future__ import annotations

import numpy as np
import torch

from kdinterp.core.io import read_json
from kdinterp.core.params import Params
from kdinterp.core.study import Layout, models
from kdinterp.measures import evaluation
from kdinterp.measures.similarity import MEASURE, SUMMARY, ModelSimilarity, SimilaritySummary
from kdinterp.measures.similarity import scores as class_similarity
from kdinterp.training.folders import class_names

__all__ = ["similarity_report"]


def similarity_report(params: Params, layout: Layout) -> SimilaritySummary:
    """Stage ``similarity``: within-class entropy, teacher agreement and same-type mass for every model.

    Reads every model's val logits (measure ``evaluation``) and writes ``outputs/similarity/summary.json``
    (:class:`~kdinterp.measures.similarity.SimilaritySummary`, :mod:`kdinterp.measures.similarity.scores`); teacher
    agreement is measured against the paper-role teacher (``reference_teacher``, its key).
    """
    classes = class_names(params.data)
    matrices = {}
    for model in models(params):
        with np.load(evaluation.MEASURE.path(layout, model, evaluation.PREDICTIONS)) as saved:
            matrices[model.key] = class_similarity.class_mean_probs(torch.from_numpy(saved["logits"]),
                                                              torch.from_numpy(saved["targets"]), len(classes))
    groups = _class_groups(params, classes)
    teacher = params.paper_models.get("teacher")
    reference = next((m.key for m in models(params) if m.name == teacher), None)
    entries = {}
    for name, matrix in matrices.items():
        entries[name] = ModelSimilarity(
            within_class_entropy=class_similarity.within_class_entropy(matrix),
            nontarget_entropy=class_similarity.nontarget_entropy(matrix),
            teacher_agreement=(class_similarity.similarity_agreement(matrices[reference], matrix)
                               if reference in matrices and name != reference else None),
            same_type_mass=class_similarity.same_group_mass(matrix, groups) if groups else None)
    summary = SimilaritySummary(entropy_unit="nats", reference_teacher=reference, models=entries,
                                same_type_mass_chance=class_similarity.chance_same_group_mass(groups) if groups else None)
    summary.write(MEASURE.path(layout, None, SUMMARY))
    return summary


def _class_groups(params: Params, classes: list[str]) -> list[str] | None:
    """Object type of each class, from the concept world's description (None for other data)."""
    if not params.data.world_file:
        return None
    by_name = {c["name"]: c["object_type"] for c in read_json(params.data.world_file)["classes"]}
    return [by_name[c] for c in classes]
