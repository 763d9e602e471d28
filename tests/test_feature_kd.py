"""Feature-based distillers (AT, FT, CRD, SSKD): loss values against the papers' formulas, a frozen
teacher, the logit-KD switch, deterministic preliminary stages, checkpoints, strict options."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchdistill.losses.mid_level import AuxSSKDLoss, CRDLoss, SSKDLoss

from kdinterp.core.config import ParamsError
from kdinterp.core.params import DataParams, DistilledParams, ModelParams, OptimParams
from kdinterp.training import methods, train
from kdinterp.training.data import build_transform
from kdinterp.training.feature_kd.at import AT, ATOptions
from kdinterp.training.feature_kd.crd import CRD, CRDOptions
from kdinterp.training.feature_kd.ft import FT, FTOptions
from kdinterp.training.feature_kd.sskd import SSKD, SSKDOptions, rotation_recognition_loss, rotations
from kdinterp.training.folders import image_folder
from kdinterp.training.hooks import retain_layer
from kdinterp.training.losses import kd_terms
from kdinterp.training.methods import feature_methods
from kdinterp.training.models import build_model

STUDENT = ModelParams("resnet10", width=4, small_input=True)
TEACHER = ModelParams("resnet10", width=8, small_input=True)  # wider: adapters must bridge 32 vs 64 channels
METHODS = feature_methods()


def build_feature_distiller(method, student, teacher, *, temperature, alpha, options, num_classes, num_samples,
                            where="options"):
    """The study's builder (:func:`kdinterp.training.methods.build`) for a feature method with these settings."""
    recipe = DistilledParams(teacher="teacher", method=method, temperature=temperature, alpha=alpha,
                             options=options if isinstance(options, dict) else {})
    if not isinstance(options, dict) and options is not None:  # an options object: bypass the params dict
        return methods.METHODS[method].distiller().from_recipe(student, teacher, recipe, options, num_classes,
                                                                num_samples)
    return methods.build(method, student, teacher, recipe, num_classes, num_samples, where)
CLASSES = 4
FAST = {"at": {}, "ft": {"paraphraser_batch_size": 8, "paraphraser_epochs": 2},
        "crd": {"feat_dim": 16}, "sskd": {"ss_head_batch_size": 8, "ss_head_epochs": 2, "ss_head_milestones": [1]}}
FROZEN = {"at": [], "ft": ["paraphraser"], "crd": [], "sskd": ["teacher_ss_head"]}
TRAINED_AUX = {"at": [], "ft": ["translator"], "crd": ["embed_student", "embed_teacher"], "sskd": ["student_ss_head"]}
CPU = torch.device("cpu")


class TinySet(Dataset):
    """16 fixed 32x32 images of 4 classes, randomly flipped (torch RNG) like an augmented train set."""

    def __init__(self) -> None:
        self.images = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(7))
        self.targets = [i % CLASSES for i in range(16)]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.images[i]
        return (image.flip(-1) if torch.rand(()) < 0.5 else image), self.targets[i]


def make(method: str, alpha: float = 0.0, seed: int = 0, prepare: bool = True, **options):
    torch.manual_seed(seed)
    teacher, student = build_model(TEACHER, CLASSES), build_model(STUDENT, CLASSES)
    distiller = build_feature_distiller(method, student, teacher, temperature=4.0, alpha=alpha,
                                        options={**FAST[method], **options}, num_classes=CLASSES, num_samples=16)
    if prepare:
        distiller.prepare(TinySet(), CPU, seed=0)
    return distiller.train()


def batch(n: int = 8, shift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    indices = torch.randperm(16, generator=g)[:n]
    return TinySet().images[indices] + shift, indices % CLASSES, indices


def terms_of(distiller, seed: int = 5, **kwargs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)  # CRD draws its negatives from the global RNG
    return distiller.forward_train(*batch(**kwargs))


# --- loss values -------------------------------------------------------------------------------------

def _at_reference(student_maps: dict, teacher_maps: dict, weight: float = 1000.0) -> float:
    """Zagoruyko & Komodakis's attention map (authors' code): Q = normalize(mean_c F^2); mean squared distance."""
    total = 0.0
    for layer in student_maps:
        qs, qt = ((m.detach().double().numpy() ** 2).mean(1).reshape(len(m), -1)
                  for m in (student_maps[layer], teacher_maps[layer]))
        qs, qt = (q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12) for q in (qs, qt))
        total += ((qs - qt) ** 2).mean()
    return weight * total


def test_at_golden_value_by_hand() -> None:
    """Student map: channels [[1,0],[0,0]] twice -> Q = (1,0,0,0); teacher: one channel of ones -> Q = (1/2,)*4.

    Code mode: mean((1/2, -1/2, -1/2, -1/2)^2) = 1/4, times 1000 = 250 per layer pair.
    Paper mode (channel sums, L2 distance per sample): ||(1/2, -1/2, -1/2, -1/2)|| = 1 -> 1000.
    """
    s = torch.zeros(1, 2, 2, 2)
    s[0, :, 0, 0] = 1.0
    t = torch.ones(1, 1, 2, 2)
    at = make("at", prepare=False)
    assert at.at_loss({"layer3": s, "layer4": s}, {"layer3": t, "layer4": t}).item() == pytest.approx(500.0)
    one = make("at", prepare=False, layers=["layer4"], mode="paper")
    assert one.at_loss({"layer4": s}, {"layer4": t}).item() == pytest.approx(1000.0)


def test_at_term_is_the_attention_distance_of_the_hooked_layers() -> None:
    at = make("at")
    with retain_layer(at.student, "layer3") as s3, retain_layer(at.student, "layer4") as s4, \
            retain_layer(at.teacher, "layer3") as t3, retain_layer(at.teacher, "layer4") as t4:
        _, terms = terms_of(at)
    assert s3.get().shape[1] != t3.get().shape[1]  # widths differ
    expected = _at_reference({"layer3": s3.get(), "layer4": s4.get()}, {"layer3": t3.get(), "layer4": t4.get()})
    assert expected > 1.0
    assert terms["loss_at"].item() == pytest.approx(expected, rel=1e-5)


def test_ft_golden_value_by_hand() -> None:
    """F_s = (3,4,0,0) -> (.6,.8,0,0); F_t = (0,0,3,4) -> (0,0,.6,.8).

    p = 1 (torchdistill, mean over elements): mean(.6,.8,.6,.8) = .7 -> 700 with weight 1000.
    p = 2: ||(.6,.8,-.6,-.8)||_2 = sqrt(2) -> 1414.2.
    """
    s = torch.tensor([[3.0, 4.0, 0.0, 0.0]]).view(1, 1, 2, 2)
    t = torch.tensor([[0.0, 0.0, 3.0, 4.0]]).view(1, 1, 2, 2)
    assert make("ft", prepare=False).ft_loss(s, t).item() == pytest.approx(700.0)
    assert make("ft", prepare=False, p=2).ft_loss(s, t).item() == pytest.approx(1000 * math.sqrt(2.0))


def test_ft_term_compares_normalised_translator_and_paraphraser_factors() -> None:
    ft = make("ft")
    with retain_layer(ft.student, "layer4") as s4, retain_layer(ft.teacher, "layer4") as t4:
        _, terms = terms_of(ft)
    with torch.no_grad():
        fs = ft.translator(s4.get()).flatten(1).double().numpy()
        ft_ = ft.paraphraser.encoder(t4.get()).flatten(1).double().numpy()
    assert fs.shape[1] == 2 * 2 * 32  # 2x2 map, k * 64 teacher channels
    fs, ft_ = (f / np.linalg.norm(f, axis=1, keepdims=True) for f in (fs, ft_))
    expected = 1000.0 * np.abs(fs - ft_).mean()
    assert terms["loss_ft"].item() == pytest.approx(expected, rel=1e-5)


def _nce_side(embed: np.ndarray, memory: np.ndarray, contrast: np.ndarray, tau: float, n: int) -> float:
    """One side of Tian et al.'s NCE loss, uniform noise P_n = 1/n, Z from this (first) batch."""
    scores = np.exp(np.einsum("bkd,bd->bk", memory[contrast], embed) / tau)
    h = scores / (scores.mean() * n)
    m, eps = contrast.shape[1] - 1, 1e-7
    positive = np.log(h[:, 0] / (h[:, 0] + m / n + eps)).sum()
    negative = np.log((m / n) / (h[:, 1:] + m / n + eps)).sum()
    return -(positive + negative) / len(embed)


def _crd_with_memory(m_student: torch.Tensor, m_teacher: torch.Tensor, **options) -> CRD:
    torch.manual_seed(0)
    crd = build_feature_distiller("crd", build_model(STUDENT, CLASSES), build_model(TEACHER, CLASSES),
                                  temperature=4.0, alpha=0.0, options=options, num_classes=CLASSES,
                                  num_samples=len(m_student))
    crd.crd_loss_fn.memory_v1.copy_(m_student)
    crd.crd_loss_fn.memory_v2.copy_(m_teacher)
    return crd


def test_crd_golden_value_by_hand() -> None:
    """Embeddings orthogonal to every memory row: all scores exp(0) = 1, Z = N = 4, h = 1/4 = P_n.

    K = 2 negatives, K P_n = 1/2: positive -log(h / (h + 1/2)) = log 3, each negative
    -log((1/2) / (h + 1/2)) = log 1.5; per side log 3 + 2 log 1.5; two sides.
    """
    rows = torch.tensor([[1.0, 0.0]]).repeat(4, 1)
    crd = _crd_with_memory(rows, rows, feat_dim=2, num_negatives=2)
    e = torch.tensor([[0.0, 1.0]])
    loss = crd.crd_loss(e, e, torch.tensor([0]), torch.tensor([[0, 2, 3]]))
    assert loss.item() == pytest.approx(2 * (math.log(3) + 2 * math.log(1.5)), rel=1e-5)


def test_crd_loss_matches_the_nce_formula_and_updates_the_memory() -> None:
    g = torch.Generator().manual_seed(3)
    m_s, m_t = (F.normalize(torch.randn(6, 3, generator=g), dim=1) for _ in range(2))
    e_s, e_t = (F.normalize(torch.randn(2, 3, generator=g), dim=1) for _ in range(2))
    indices, contrast = torch.tensor([1, 4]), torch.tensor([[1, 0, 2, 3], [4, 5, 0, 1]])
    crd = _crd_with_memory(m_s, m_t, feat_dim=3, num_negatives=3, nce_temp=0.5, weight=0.8)
    loss = crd.crd_loss(e_s, e_t, indices, contrast)
    expected = 0.8 * (_nce_side(e_s.numpy(), m_t.numpy(), contrast.numpy(), 0.5, 6)
                      + _nce_side(e_t.numpy(), m_s.numpy(), contrast.numpy(), 0.5, 6))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    moved = F.normalize(0.5 * m_s[indices] + 0.5 * e_s, dim=1)  # momentum 0.5
    assert torch.allclose(crd.crd_loss_fn.memory_v1[indices], moved, atol=1e-6)
    assert torch.equal(crd.crd_loss_fn.memory_v1[[0, 2, 3, 5]], m_s[[0, 2, 3, 5]])


@pytest.mark.parametrize("num_negatives", [15, 2])  # whole-bank matmul / torchdistill's own gather
def test_crd_loss_equals_torchdistills(num_negatives: int) -> None:
    g = torch.Generator().manual_seed(8)
    e_s, e_t = (F.normalize(torch.randn(4, 16, generator=g), dim=1) for _ in range(2))
    indices = torch.tensor([3, 7, 8, 12])
    crd = make("crd", num_negatives=num_negatives)
    reference = CRDLoss("embed_student", "empty", "embed_teacher", 16, 16, num_negatives, 16, temperature=0.07,
                        momentum=0.5)
    reference.load_state_dict(crd.crd_loss_fn.state_dict())
    for step in range(2):  # the first batch also sets the normalisation constants Z
        contrast = crd.draw_contrast_indices(indices, indices % CLASSES)
        ours = crd.crd_loss(e_s, e_t, indices, contrast)
        theirs = reference({"embed_student": {"output": e_s}, "empty": {"input": {"pos_idx": indices,
                                                                                   "contrast_idx": contrast}}},
                           {"embed_teacher": {"output": e_t}})
        assert ours.item() == pytest.approx(theirs.item(), rel=1e-5), step
        for name, value in reference.state_dict().items():
            assert torch.allclose(crd.crd_loss_fn.state_dict()[name], value, rtol=1e-5, atol=1e-6), (step, name)
        e_s, e_t = e_t, e_s


def test_crd_term_uses_the_hooked_embeddings_and_drawn_negatives(monkeypatch) -> None:
    crd = make("crd")
    drawn = []
    real_draw = crd.draw_contrast_indices
    monkeypatch.setattr(crd, "draw_contrast_indices", lambda *a: drawn.append(real_draw(*a)) or drawn[-1])
    m_s, m_t = crd.crd_loss_fn.memory_v1.clone(), crd.crd_loss_fn.memory_v2.clone()
    with retain_layer(crd.student, "avgpool") as s, retain_layer(crd.teacher, "avgpool") as t:
        _, terms = terms_of(crd)
    with torch.no_grad():
        e_s, e_t = crd.embed_student(s.get().flatten(1)).numpy(), crd.embed_teacher(t.get().flatten(1)).numpy()
    contrast = drawn[0].numpy()
    expected = _nce_side(e_s, m_t.numpy(), contrast, 0.07, 16) + _nce_side(e_t, m_s.numpy(), contrast, 0.07, 16)
    assert terms["loss_crd"].item() == pytest.approx(expected, rel=1e-4)


def test_crd_negatives_come_from_other_classes_and_are_capped() -> None:
    crd = make("crd")
    assert crd.num_negatives == 15  # 16384 capped at num_samples - 1
    _, targets, indices = batch()
    seen = set()
    for _ in range(20):
        contrast = crd.draw_contrast_indices(indices, targets)
        assert contrast.shape == (8, 16) and torch.equal(contrast[:, 0], indices)
        labels = torch.tensor(TinySet().targets)[contrast[:, 1:]]
        assert bool((labels != targets.unsqueeze(1)).all())
        seen |= set(contrast[targets == 0, 1:].flatten().tolist())
    assert seen == {i for i in range(16) if i % CLASSES != 0}  # every other-class sample can be drawn


def test_crd_memory_under_ddp_is_the_global_batch_update() -> None:
    """Two processes with 4 samples each end with the banks of one process with all 8 (fake all_gather)."""
    full, shares = make("crd"), [make("crd"), make("crd")]
    images, targets, indices = batch()
    with torch.no_grad():
        e_s = F.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(4)), dim=1)
        e_t = F.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(5)), dim=1)
    contrast = full.draw_contrast_indices(indices, targets)
    full.crd_loss(e_s, e_t, indices, contrast)
    for rank, share in enumerate(shares):
        mine = slice(4 * rank, 4 * rank + 4)
        saved = (share.crd_loss_fn.memory_v1[indices[mine]].clone(), share.crd_loss_fn.memory_v2[indices[mine]].clone())
        share.crd_loss(e_s[mine], e_t[mine], indices[mine], contrast[mine])
        everything = iter([indices, e_s, e_t, share.crd_loss_fn.params[2:4].repeat(2, 1)])
        share.synchronise_memory(indices[mine], e_s[mine], e_t[mine], saved, lambda _: next(everything), True)
        for bank in ("memory_v1", "memory_v2"):
            assert torch.allclose(getattr(share.crd_loss_fn, bank), getattr(full.crd_loss_fn, bank), atol=1e-6)
    assert not torch.allclose(full.crd_loss_fn.memory_v1, make("crd").crd_loss_fn.memory_v1)


def test_crd_refuses_to_train_without_labels() -> None:
    with pytest.raises(RuntimeError, match="call prepare"):
        terms_of(make("crd", prepare=False))


def test_sskd_rotation_layout() -> None:
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    r = rotations(x)
    assert r.shape == (8, 3, 4, 4)
    for i in range(2):
        for k in range(4):
            assert torch.equal(r[4 * i + k], torch.rot90(x[i], k, dims=(1, 2)))
    with pytest.raises(ValueError, match="square"):
        rotations(torch.zeros(1, 3, 4, 5))


def test_sskd_tf_golden_value_by_hand() -> None:
    """One image (N = 1), K = 2, teacher logits 0 (uniform), student rotated logits (4 ln 4, 0) -> p = (.8, .2).

    TF: KL(u || p) = .5 ln(.5/.8) + .5 ln(.5/.2) = .5 ln 1.5625 on each of the 3 rotations,
    times tf_temp^2 = 16 and tf_weight = 2.7. SS: one original only, so every softmax is 1 and KL = 0.
    """
    sskd = make("sskd", prepare=False)
    student_logits = torch.tensor([[0.0, 0.0]] + [[4 * math.log(4.0), 0.0]] * 3)
    terms = sskd.sskd_terms(student_logits, torch.zeros(4, 2), torch.randn(4, 5), torch.randn(4, 5), torch.tensor([0]))
    assert terms["loss_tf"].item() == pytest.approx(2.7 * 16 * 0.5 * math.log(1.5625), rel=1e-5)
    assert terms["loss_ss"].item() == pytest.approx(0.0, abs=1e-6)


def test_sskd_ss_term_matches_the_formula_and_drops_the_teachers_mistakes() -> None:
    """N = 2 originals; teacher SS rows: originals (1,0), (0,1); rotations of image 0: (1,.1), (1,.2), (.1,1)
    (the last one is closer to image 1: the teacher's only mistake); of image 1: (.1,1), (.2,1), (.3,1).
    With ss_ratio 0.75, int(1 * 0.75) = 0 mistakes are kept: the SS KL averages over the other 5 rows.
    """
    teacher_ss = torch.tensor([[1, 0], [1, .1], [1, .2], [.1, 1], [0, 1], [.1, 1], [.2, 1], [.3, 1]])
    student_ss = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    logits, targets = torch.randn(8, CLASSES), torch.tensor([0, 1])

    def similarities(z: torch.Tensor) -> np.ndarray:
        z = F.normalize(z, dim=1).double().numpy()
        return z[[1, 2, 3, 5, 6, 7]] @ z[[0, 4]].T

    def log_softmax(a: np.ndarray) -> np.ndarray:
        return a - np.log(np.exp(a).sum(1, keepdims=True))

    tau = 0.5
    log_p_t, log_p_s = log_softmax(similarities(teacher_ss) / tau), log_softmax(similarities(student_ss) / tau)
    kl = (np.exp(log_p_t) * (log_p_t - log_p_s)).sum(1)
    kept = [0, 1, 3, 4, 5]  # rotated rows whose source the teacher ranks first
    assert similarities(teacher_ss).argmax(1).tolist() == [0, 0, 1, 1, 1, 1]
    for ratio, rows in ((0.75, kept), (1.0, list(range(6)))):
        sskd = make("sskd", prepare=False, ss_ratio=ratio)
        loss = sskd.sskd_terms(logits, logits, student_ss, teacher_ss.float(), targets)["loss_ss"]
        assert loss.item() == pytest.approx(10.0 * tau**2 * kl[rows].mean(), rel=1e-5)


def test_sskd_losses_equal_torchdistills() -> None:
    """Our similarity matrix (a product of normalised rows) gives torchdistill's SSKDLoss and AuxSSKDLoss values."""
    g = torch.Generator().manual_seed(6)
    logits, teacher_logits = torch.randn(24, CLASSES, generator=g), torch.randn(24, CLASSES, generator=g)
    ss_s, ss_t, targets = torch.randn(24, 5, generator=g), torch.randn(24, 7, generator=g), torch.arange(6) % CLASSES
    ours = make("sskd", prepare=False).sskd_terms(logits, teacher_logits, ss_s, ss_t, targets)
    student_io = {"fc": {"output": logits}, "ss_module": {"output": ss_s}}
    teacher_io = {"fc": {"output": teacher_logits}, "ss_module": {"output": ss_t}}
    for name, weights in (("loss_ss", [0.0, 0.0, 10.0, 0.0]), ("loss_tf", [0.0, 0.0, 0.0, 2.7])):
        reference = SSKDLoss("fc", "fc", "ss_module", "ss_module", kl_temp=4.0, ss_temp=0.5, tf_temp=4.0, ss_ratio=0.75,
                             tf_ratio=1.0, loss_weights=weights)(student_io, teacher_io, targets)
        assert ours[name].item() == pytest.approx(reference.item(), rel=1e-5), name
    reference = AuxSSKDLoss()({}, {"ss_module": {"output": ss_t}})
    assert rotation_recognition_loss(ss_t).item() == pytest.approx(reference.item(), rel=1e-5)


def test_sskd_terms_use_rotated_batch_and_ss_heads() -> None:
    sskd = make("sskd")
    with retain_layer(sskd.student, "avgpool") as s, retain_layer(sskd.teacher, "avgpool") as t, \
            retain_layer(sskd.student, "fc") as s_fc, retain_layer(sskd.teacher, "fc") as t_fc:
        logits, terms = terms_of(sskd)
    images, targets, _ = batch()
    assert s.get().shape[0] == 4 * len(images) and torch.equal(logits, s_fc.get()[0::4])
    with torch.no_grad():
        expected = sskd.sskd_terms(s_fc.get(), t_fc.get(), sskd.student_ss_head(s.get().flatten(1)),
                                   sskd.teacher_ss_head(t.get().flatten(1)), targets)
    for name in ("loss_ss", "loss_tf"):
        assert terms[name].item() == pytest.approx(expected[name].item(), rel=1e-6)
        assert terms[name].item() > 0


# --- every method --------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_teacher_and_prepared_modules_are_frozen(method: str) -> None:
    distiller = make(method, alpha=0.5)
    teacher_state = {k: v.clone() for k, v in distiller.teacher.state_dict().items()}
    frozen = [getattr(distiller, name) for name in FROZEN[method]]
    frozen_state = [{k: v.clone() for k, v in m.state_dict().items()} for m in frozen]
    distiller.train()
    assert distiller.student.training and not distiller.teacher.training
    assert not any(m.training for m in frozen)
    _, terms = terms_of(distiller, shift=3.0)  # shifted inputs would move BN statistics in train mode
    sum(terms.values()).backward()
    assert all(p.grad is None for p in distiller.teacher.parameters())
    assert all(p.grad is None for m in frozen for p in m.parameters())
    for key, value in distiller.teacher.state_dict().items():
        assert torch.equal(value, teacher_state[key]), key
    for module, state in zip(frozen, frozen_state, strict=True):
        assert all(torch.equal(v, state[k]) for k, v in module.state_dict().items())
    learnable = {id(p) for p in distiller.learnable_parameters()}
    expected = [*distiller.student.parameters(), *(p for n in TRAINED_AUX[method]
                                                  for p in getattr(distiller, n).parameters())]
    assert learnable == {id(p) for p in expected}
    assert all(p.grad is not None for p in expected)


@pytest.mark.parametrize("method", METHODS)
def test_alpha_switches_the_logit_kd_term(method: str) -> None:
    images, targets, _ = batch()
    without_logits, without = terms_of(make(method, alpha=0.0))
    with_logits, with_ = terms_of(make(method, alpha=0.5))
    assert "loss_kd" not in without
    assert without["loss_ce"].item() == pytest.approx(F.cross_entropy(without_logits, targets).item(), rel=1e-6)
    with torch.no_grad():
        teacher_logits = make(method, prepare=False).teacher(images)  # same seed: the same teacher
    reference = kd_terms(with_logits, teacher_logits, targets, 4.0, 0.5)
    assert set(with_) == set(without) | {"loss_kd"}
    for name in ("loss_ce", "loss_kd"):
        assert with_[name].item() == pytest.approx(reference[name].item(), rel=1e-5), name
    assert with_["loss_kd"].item() > 0
    for name in set(without) - {"loss_ce"}:  # the feature terms do not depend on alpha
        assert with_[name].item() == pytest.approx(without[name].item(), rel=1e-6), name


@pytest.mark.parametrize("method", ["ft", "sskd"])
def test_prepare_is_deterministic_for_a_seed(method: str) -> None:
    module = FROZEN[method][0]
    a, b, c = (make(method, seed=s, prepare=False) for s in (0, 1, 2))  # different initial aux modules
    for other in (b, c):
        other.teacher.load_state_dict(a.teacher.state_dict())  # the same teacher
    untrained = {k: v.clone() for k, v in getattr(a, module).state_dict().items()}
    rng = torch.random.get_rng_state()
    a.prepare(TinySet(), CPU, seed=3)
    assert torch.equal(torch.random.get_rng_state(), rng)  # the caller's RNG stream is left alone
    b.prepare(TinySet(), CPU, seed=3)
    c.prepare(TinySet(), CPU, seed=4)
    sa, sb, sc = (getattr(d, module).state_dict() for d in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert not all(torch.equal(sa[k], untrained[k]) for k in sa)


def test_crd_prepare_records_the_training_labels() -> None:
    crd = make("crd", prepare=False)
    crd.prepare(TinySet(), CPU, seed=0)
    assert crd.sample_labels.tolist() == TinySet().targets
    short = torch.utils.data.Subset(TinySet(), range(8))
    with pytest.raises(ValueError, match="16 training samples"):
        crd.prepare(short, CPU, seed=0)


@pytest.mark.parametrize("method", METHODS)
def test_trainable_state_dict_round_trip_restores_the_losses(method: str) -> None:
    a = make(method, alpha=0.5)
    optimizer = torch.optim.SGD(a.learnable_parameters(), lr=0.01)
    for _ in range(2):
        optimizer.zero_grad()
        sum(terms_of(a)[1].values()).backward()
        optimizer.step()
    state = a.trainable_state_dict()
    assert not any(k.startswith("teacher.") for k in state)
    for name in [*FROZEN[method], *TRAINED_AUX[method]]:
        assert any(k.startswith(f"{name}.") for k in state), name
    if method == "crd":
        assert {"crd_loss_fn.memory_v1", "crd_loss_fn.memory_v2", "crd_loss_fn.params", "sample_labels"} <= set(state)
    b = make(method, alpha=0.5, seed=1, prepare=False)
    b.teacher.load_state_dict(a.teacher.state_dict())  # the teacher comes from its own file
    before = terms_of(b, seed=9) if method != "crd" else None  # CRD without labels refuses to run
    b.load_trainable_state_dict(state)
    expected, restored = terms_of(a, seed=9)[1], terms_of(b, seed=9)[1]
    for name, value in expected.items():
        assert torch.equal(value, restored[name]), name
    if before is not None:
        assert any(not torch.equal(v, before[1][k]) for k, v in expected.items())


@pytest.mark.parametrize(("method", "typo", "fix"), [("at", "wieght", "weight"),
                                                     ("ft", "paraphraser_epoch", "paraphraser_epochs"),
                                                     ("crd", "num_negative", "num_negatives"),
                                                     ("sskd", "ss_tmp", "ss_temp")])
def test_unknown_option_keys_fail_with_the_dotted_key(method: str, typo: str, fix: str) -> None:
    with pytest.raises(ParamsError, match=rf"students\.x\.options\.{typo}: unknown key \(did you mean '{fix}'\?\)"):
        build_feature_distiller(method, build_model(STUDENT, CLASSES), build_model(TEACHER, CLASSES),
                                temperature=4.0, alpha=0.0, options={typo: 1}, num_classes=CLASSES,
                                num_samples=16, where="students.x.options")


def test_option_values_are_checked() -> None:
    args = {"student": build_model(STUDENT, CLASSES), "teacher": build_model(TEACHER, CLASSES), "temperature": 4.0,
            "alpha": 0.0, "num_classes": CLASSES, "num_samples": 16, "where": "students.x.options"}
    with pytest.raises(ParamsError, match=r"students\.x\.options\.layers: expected a list"):
        build_feature_distiller("at", options={"layers": "layer4"}, **args)
    with pytest.raises(ParamsError, match=r"students\.x\.options: momentum must be in \[0, 1\)"):
        build_feature_distiller("crd", options={"momentum": 1.5}, **args)
    with pytest.raises(ValueError, match="student has no layer 'layer5'"):
        build_feature_distiller("at", options={"layers": ["layer5"]}, **args)
    with pytest.raises(ValueError, match="outputs 4 classes, the data set has 10"):
        build_feature_distiller("at", options={}, **{**args, "num_classes": 10})


def test_defaults_are_the_papers_torchdistill_configs() -> None:
    assert (ATOptions().layers, ATOptions().weight, ATOptions().mode) == (("layer3", "layer4"), 1000.0, "code")
    ft = FTOptions()
    assert (ft.layer, ft.rate, ft.p, ft.weight, ft.paraphraser_epochs, ft.paraphraser_lr) == ("layer4", 0.5, 1, 1000.0,
                                                                                             1, 0.01)
    crd = CRDOptions()
    assert (crd.feat_dim, crd.num_negatives, crd.nce_temp, crd.momentum, crd.weight) == (128, 16384, 0.07, 0.5, 1.0)
    s = SSKDOptions()
    assert (s.ss_temp, s.tf_temp, s.ss_ratio, s.tf_ratio, s.ss_weight, s.tf_weight) == (0.5, 4.0, 0.75, 1.0, 10.0, 2.7)
    assert (s.ss_head_epochs, s.ss_head_lr, s.ss_head_milestones) == (30, 0.1, (10, 20))
    assert isinstance(make("sskd", prepare=False), SSKD) and isinstance(make("at", prepare=False), AT)
    assert isinstance(make("ft", prepare=False), FT)


@pytest.mark.parametrize("method", METHODS)
def test_a_few_steps_decrease_the_loss(method: str) -> None:
    distiller = make(method, alpha=0.5)
    optimizer = torch.optim.SGD(distiller.learnable_parameters(), lr=0.02, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = sum(terms_of(distiller)[1].values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_losses_are_float32_under_bf16_autocast() -> None:
    """The trainer's CUDA bf16 autocast must not push the losses (CRD's bmm/exp, SSKD's softmaxes) into bf16:
    under autocast, bf16 features give exactly the float32 loss of the same (bf16-rounded) values."""
    g = torch.Generator().manual_seed(2)
    bf16 = lambda *shape: torch.randn(*shape, generator=g).to(torch.bfloat16)  # noqa: E731
    at, ft, crd, sskd = make("at", prepare=False), make("ft", prepare=False), make("crd"), make("sskd", prepare=False)
    s3, t3, s4, t4 = bf16(2, 8, 4, 4), bf16(2, 16, 4, 4), bf16(2, 8, 2, 2), bf16(2, 16, 2, 2)
    e_s, e_t = (F.normalize(bf16(8, 16).float(), dim=1).to(torch.bfloat16) for _ in range(2))
    _, targets, indices = batch()
    contrast = crd.draw_contrast_indices(indices, targets)
    logits, teacher_logits, ss_s, ss_t = bf16(32, CLASSES), bf16(32, CLASSES), bf16(32, 5), bf16(32, 7)
    crd_state = {k: v.clone() for k, v in crd.state_dict().items()}
    cases = {
        "at": lambda f: at.at_loss({"layer3": f(s3), "layer4": f(s4)}, {"layer3": f(t3), "layer4": f(t4)}),
        "ft": lambda f: ft.ft_loss(f(s4), f(s4.flip(0))),
        "crd": lambda f: (crd.load_state_dict(crd_state), crd.crd_loss(f(e_s), f(e_t), indices, contrast))[1],
        "sskd_ss": lambda f: sskd.sskd_terms(f(logits), f(teacher_logits), f(ss_s), f(ss_t), targets)["loss_ss"],
        "sskd_tf": lambda f: sskd.sskd_terms(f(logits), f(teacher_logits), f(ss_s), f(ss_t), targets)["loss_tf"],
        "kd": lambda f: sum(make("at", alpha=0.5, prepare=False).logit_terms(f(logits), f(teacher_logits),
                                                                              torch.arange(32) % CLASSES).values()),
    }
    for name, loss in cases.items():
        reference = loss(lambda x: x.float())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = loss(lambda x: x)
        assert value.dtype == torch.float32 and value.shape == (), name
        assert value.item() == pytest.approx(reference.item(), rel=1e-6), name


@pytest.mark.parametrize("method", ["ft", "crd"])  # a frozen prepared module; memory banks and labels
def test_killed_training_resumes_to_the_same_state(method: str, tiny_folders, tmp_path: Path, monkeypatch) -> None:
    """The trainer's resume path: no second ``prepare``; aux modules and CRD memory come from the checkpoint."""
    data = DataParams(train_dir=str(tiny_folders["train"]), val_dir=str(tiny_folders["val"]), image_size=16,
                      augment="crop_flip", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    optim = OptimParams(epochs=2, batch_size=8, lr=0.02)

    def run(folder: str):
        torch.manual_seed(0)
        distiller = build_feature_distiller(method, build_model(STUDENT, 3), build_model(TEACHER, 3), temperature=4.0,
                                            alpha=0.5, options=FAST[method], num_classes=3, num_samples=24)
        train_set = image_folder(tiny_folders["train"], build_transform(data, train=True))
        train.fit(distiller, train_set, None, optim, seed=3, checkpoint_dir=tmp_path / folder, fingerprint="f",
                  device=CPU)
        return distiller

    reference = run("a").trainable_state_dict()
    real_epoch = train.train_one_epoch

    def dies_in_second_epoch(distiller, loader, optimizer, epoch, *args):
        if epoch == 1:
            raise KeyboardInterrupt
        return real_epoch(distiller, loader, optimizer, epoch, *args)

    monkeypatch.setattr(train, "train_one_epoch", dies_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run("b")
    monkeypatch.setattr(train, "train_one_epoch", real_epoch)
    prepared = []
    monkeypatch.setattr({"at": AT, "ft": FT, "crd": CRD, "sskd": SSKD}[method], "prepare",
                        lambda *a: prepared.append(a))
    resumed = run("b").trainable_state_dict()
    assert not prepared
    for key, value in reference.items():
        assert torch.equal(value, resumed[key]), key
