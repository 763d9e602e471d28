"""Issue 15: one forward pass (activations kept in memory or in a memmap), the sparse tally and the
batched input pipeline give exactly the results of the two-pass, dense, per-image engine."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from kdinterp.dissection.activations import ActivationStore
from kdinterp.dissection.broden import BrodenDataset, load_broden
from kdinterp.dissection.engine import ActivePixels, Variant, active_pixels, dissect
from kdinterp.dissection.tally import Tally
from kdinterp.dissection.variants import random_rotation
from kdinterp.training.memory_data import to_normalized
from tests.conftest import write_broden
from tests.dense_tally import DenseTally
from tests.test_dissection_oracle import CATEGORIES, LABELS, UNITS, _Model, _rows, _to_tensor

RESULT_ARRAYS = ("thresholds", "intersection", "unit_area", "concept_area", "iou")


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> BrodenDataset:
    root = write_broden(tmp_path_factory.mktemp("engine"), LABELS, _rows(3), image_size=24, seg_size=12)
    return BrodenDataset(load_broden(root, CATEGORIES), _to_tensor)


def _model() -> _Model:
    """The oracle's model with its weights as buffers, so that ``.to(device)`` moves them."""
    model = _Model(seed=7)
    for name in ("weight", "bias"):
        value = getattr(model.layer4, name)
        delattr(model.layer4, name)
        model.layer4.register_buffer(name, value)
    return model


def _run(dataset: BrodenDataset, batch_size: int, device: torch.device = torch.device("cpu"), **options):
    variants = (Variant("unit", 0.2), Variant("rotated", 0.1, random_rotation(UNITS, 0)))
    return dissect(_model(), "layer4", dataset, quantile=0.1, batch_size=batch_size, device=device,
                   variants=variants, blocks=3, **options)


def _assert_same(a, b, blocks: bool = True, variants: bool = True) -> None:
    for name in RESULT_ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert getattr(a, name).dtype == getattr(b, name).dtype, name
    assert a.num_images == b.num_images
    assert len(a.variants) == len(b.variants)
    for x, y in zip(a.variants, b.variants, strict=True) if variants else ():
        assert np.array_equal(x.thresholds, y.thresholds) and np.array_equal(x.iou, y.iou)
    for name in ("image_index", "max_activation", "maps"):
        assert np.array_equal(getattr(a.top_images, name), getattr(b.top_images, name)), name
    if blocks:
        for name in ("intersection", "unit_area", "concept_area", "images"):
            assert np.array_equal(getattr(a.blocks, name), getattr(b.blocks, name)), name


def _dense_reference(dataset: BrodenDataset, result, rule: str = "lite",
                     device: torch.device = torch.device("cpu")) -> DenseTally:
    """The pre-issue-15 tally of the main view on the CPU, from per-image activations (computed on ``device``)
    and the reader's labels."""
    model = _model().to(device)
    dense = DenseTally(result.num_units, dataset.broden.label_category, len(CATEGORIES), rule=rule)
    size = (dataset.broden.rows[0].sh, dataset.broden.rows[0].sw)
    for i in range(len(dataset)):
        image, planes, scalars = dataset[i]
        acts = model.layer4(image[None].to(device)).cpu()
        dense.update(active_pixels(acts, torch.from_numpy(result.thresholds), size), planes.flatten(1)[None],
                     scalars[None])
    return dense


@pytest.mark.parametrize("batch_size", [1, 4, 5, 23])
def test_kept_activations_equal_recomputed_ones_bit_for_bit(probe: BrodenDataset, batch_size: int, tmp_path) -> None:
    assert len(probe) == 23  # not divisible by 4 or 5: the last batch is short
    recomputed = _run(probe, batch_size, activations="recompute")
    memory = _run(probe, batch_size, activations="auto")
    disk = _run(probe, batch_size, activations="disk", scratch_dir=tmp_path)
    over_cap = _run(probe, batch_size, activations="auto", activation_memory_bytes=0, scratch_dir=tmp_path)
    for other in (memory, disk, over_cap):
        _assert_same(recomputed, other)
    assert list(tmp_path.iterdir()) == []  # the memmap directory is gone
    whole = _run(probe, len(probe), activations="recompute")
    # The batch size changes nothing of the main tally. (The rotated basis is a float32 GEMM whose
    # summation order follows the batch shape, so its thresholds may move by an ulp: not compared.)
    _assert_same(whole, memory, blocks=False, variants=False)
    assert recomputed.blocks.intersection.sum(0).tolist() == recomputed.intersection.tolist()
    dense = _dense_reference(probe, memory)
    assert memory.intersection.sum() > 0 and (memory.iou > 0.05).any()
    for name in ("intersection", "unit_area", "concept_area"):
        assert np.array_equal(getattr(memory, name), getattr(dense, name).numpy()), name


@pytest.mark.parametrize("rule", ["lite", "netdissect"])
@pytest.mark.parametrize("planes", [0, 1, 3])
def test_sparse_tally_equals_the_dense_tally(rule: str, planes: int) -> None:
    rng = torch.Generator().manual_seed(planes)
    label_category = np.array([-1, 0, 0, 1, -1, 1, 2, 2])  # label 4: in no selected category
    sparse, dense = Tally(5, label_category, 3, rule=rule), DenseTally(5, label_category, 3, rule=rule)
    for batch in (7, 1, 4):
        masks = torch.rand(batch, 5, 30, generator=rng) > 0.8
        masks[:, 2] = False  # a unit that never fires
        labels = torch.randint(0, 8, (batch, planes, 30), generator=rng)
        scalars = torch.randint(0, 8, (batch, 2), generator=rng)
        shared = sparse.prepare(labels, scalars)
        sparse.add(ActivePixels.from_masks(masks), shared)
        dense.update(ActivePixels.from_masks(masks), labels, scalars)
    for name in ("intersection", "unit_area", "concept_area"):
        got, want = getattr(sparse, name), getattr(dense, name)
        assert got.dtype == torch.int64 and torch.equal(got, want), name
    assert sparse.intersection[:, 0].eq(0).all() and sparse.intersection[2].eq(0).all()
    assert sparse.intersection.sum() > 0 and sparse.num_images == dense.num_images == 12


def test_batch_normalisation_equals_per_image_normalisation(probe: BrodenDataset) -> None:
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)
    per_image = BrodenDataset(probe.broden, v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                                                        v2.Normalize(mean, std)]))
    raw = BrodenDataset(probe.broden, v2.PILToTensor())
    batched = partial(to_normalized, mean=mean, std=std)
    a = _run(per_image, 5)
    b = _run(raw, 5, batch_transform=batched)
    c = _run(raw, 5, batch_transform=batched, num_workers=1)  # workers decode with one thread each
    _assert_same(a, b)
    _assert_same(a, c)


def test_the_memmap_is_deleted_on_error(probe: BrodenDataset, tmp_path, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise RuntimeError("tally failed")

    monkeypatch.setattr(Tally, "add", fail)
    with pytest.raises(RuntimeError, match="tally failed"):
        _run(probe, 5, activations="disk", scratch_dir=tmp_path / "out")
    assert (tmp_path / "out").is_dir() and list((tmp_path / "out").iterdir()) == []


def test_store_returns_any_image_range(tmp_path) -> None:
    data = torch.randn(11, 3, 2, 2)
    for storage, cap in (("auto", 1 << 20), ("auto", 0), ("disk", 1 << 20)):
        with ActivationStore(storage, 11, cap, tmp_path) as store:
            for start in range(0, 11, 4):
                store.append(data[start:start + 4].double())  # kept as float32
            assert store.where == ("memory" if cap and storage == "auto" else "disk")
            for start, stop in ((0, 11), (3, 9), (8, 11), (4, 8)):
                got = store.get(start, stop)
                assert got.dtype == torch.float32 and torch.equal(got, data[start:stop])
            with pytest.raises(ValueError, match="does not fit"):
                store.append(data[:1])
    assert list(tmp_path.iterdir()) == []
    with ActivationStore("recompute", 11, 1 << 20) as store:
        store.append(data[:4])
        assert not store.kept
        with pytest.raises(RuntimeError, match="not kept"):
            store.get(0, 4)
    with pytest.raises(ValueError, match="'auto', 'disk' or 'recompute'"):
        ActivationStore("memory", 11, 0)


def _status(key: str) -> int:
    """``/proc/self/status`` field in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc peak-RSS reset")
def test_disk_store_peak_memory_does_not_grow_with_the_images(tmp_path) -> None:
    batch, shape, batches = 64, (256, 4, 4), 64        # 4 MiB per batch, 256 MiB in all
    with ActivationStore("disk", batch * batches, 0, tmp_path) as store:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        base = _status("VmHWM")
        for i in range(batches):
            store.append(torch.full((batch, *shape), float(i)))
        for i in range(batches):
            assert store.get(i * batch, (i + 1) * batch)[:, 0, 0, 0].eq(float(i)).all()
        grown = _status("VmHWM") - base
        assert store.path.stat().st_size == batch * batches * 256 * 16 * 4
    # One batch is 4 MiB: about 10 MiB measured; a mapping of the whole file kept open measured 70 MiB.
    assert grown < 32 << 20, f"peak RSS grew by {grown >> 20} MiB while 256 MiB went through the memmap"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("storage", ["auto", "disk"])
def test_cuda_kept_activations_and_sparse_tally_are_exact(probe: BrodenDataset, storage: str, tmp_path) -> None:
    """On CUDA: kept activations (memory, or a memmap read back to the device) equal a second forward pass,
    and the int64 sparse counts equal the dense reference tally fed the same activations and thresholds."""
    cuda = torch.device("cuda")
    recomputed = _run(probe, 5, activations="recompute", device=cuda)
    kept = _run(probe, 5, activations=storage, device=cuda, scratch_dir=tmp_path)
    _assert_same(recomputed, kept)
    assert list(tmp_path.iterdir()) == []
    dense = _dense_reference(probe, kept, device=cuda)
    for name in ("intersection", "unit_area", "concept_area"):
        assert np.array_equal(getattr(kept, name), getattr(dense, name).numpy()), name
