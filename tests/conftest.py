"""Shared fixtures: tiny ImageFolder data, tiny Broden-layout probe sets, tiny params."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# Two threads, the reference runs' count, unless OMP_NUM_THREADS says otherwise: `make test` runs two pytest-xdist
# workers with one thread each, since two 2-thread processes on 2 cores spin in OpenMP (ecosystem.md).
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 2))

BIN = Path(sys.executable).parent

CATEGORY_ORDER = ("color", "object", "part", "material", "scene", "texture")


def write_label_png(path: Path, labels: np.ndarray) -> str:
    """Write an int label map as a Broden segmentation PNG (R + 256 * G); return the file name."""
    labels = np.asarray(labels, dtype=np.int64)
    rgb = np.zeros((*labels.shape, 3), dtype=np.uint8)
    rgb[..., 0] = labels % 256
    rgb[..., 1] = labels // 256
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb, "RGB").save(path)
    return path.name


def write_broden(root: Path, labels: dict[int, tuple[str, str]], rows: list[dict], *,
                 image_size: int = 8, seg_size: int | None = None, suffix: str = "png") -> Path:
    """Write a Broden-layout probe set.

    Args:
        root: target directory.
        labels: ``{number: (name, category)}``.
        rows: one dict per image: ``{"image": uint8 (H, W, 3) array (optional),
            category: list of int scalars or 2-D label arrays}``.
        image_size: size of generated images when a row gives none.
        seg_size: segmentation size (default: image size).
        suffix: the images' file type (``jpg`` as in ``broden1_224``); segmentations are always PNG.
    """
    seg = seg_size or image_size
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    present = [c for c in CATEGORY_ORDER if any(cat == c for _, cat in labels.values())]
    with open(root / "category.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "first", "last", "count", "frequency"])
        for c in present:
            w.writerow([c, 0, 0, 0, 0])
    with open(root / "label.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["number", "name", "category", "frequency", "coverage", "syns"])
        for number, (name, cat) in sorted(labels.items()):
            w.writerow([number, name, f"{cat}(1)", 1, "1.0", ""])
    for c in present:
        with open(root / f"c_{c}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["code", "number", "name", "frequency", "coverage"])
            for code, (number, (name, cat)) in enumerate(sorted(labels.items()), start=1):
                if cat == c:
                    w.writerow([code, number, name, 1, "1.0"])
    rng = np.random.default_rng(0)
    with open(root / "index.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "split", "ih", "iw", "sh", "sw", *CATEGORY_ORDER])
        for i, row in enumerate(rows):
            pixels = row.get("image")
            if pixels is None:
                pixels = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
            Image.fromarray(np.asarray(pixels, dtype=np.uint8), "RGB").save(images / f"img{i}.{suffix}")
            fields = []
            for c in CATEGORY_ORDER:
                items = []
                for j, item in enumerate(row.get(c, [])):
                    if isinstance(item, int):
                        items.append(str(item))
                    else:
                        items.append(write_label_png(images / f"img{i}_{c}_{j}.png", item))
                fields.append(";".join(items))
            w.writerow([f"img{i}.{suffix}", "train", pixels.shape[0], pixels.shape[1], seg, seg, *fields])
    return root


def write_image_folder(root: Path, classes: list[str], per_class: int, size: int = 16, seed: int = 0) -> Path:
    """Write ``per_class`` noisy images per class; class ``k`` has mean colour ``k / len(classes)``."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        base = np.array([255 * k / len(classes), 128, 255 - 255 * k / len(classes)])
        for i in range(per_class):
            pixels = np.clip(base + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(folder / f"{name}_{i:03d}.png")
    return root


@pytest.fixture
def tiny_folders(tmp_path: Path) -> dict[str, Path]:
    """Train/val ImageFolder trees with 3 colour classes of 16x16 images."""
    classes = ["a_one", "a_two", "b_one"]
    return {"train": write_image_folder(tmp_path / "train", classes, 8, seed=0),
            "val": write_image_folder(tmp_path / "val", classes, 4, seed=1)}


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for `dvc`, `git` and `kdinterp` in a test project: this venv first, no telemetry."""
    return {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
            "GX_ANALYTICS_ENABLED": "false", "KDINTERP_PROGRESS": "0", **extra}


def run_dvc(project: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """`dvc ARGS` in ``project``; fails the test with DVC's output unless ``check`` is False."""
    done = subprocess.run([str(BIN / "dvc"), *args], cwd=project, env=env or tool_env(), capture_output=True,
                          text=True)
    if check and done.returncode != 0:
        pytest.fail(f"dvc {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def git(project: Path, *args: str) -> str:
    """`git ARGS` in ``project`` (a test identity, no hooks); its stdout."""
    from tests.tiny_study import GIT_IDENTITY

    env = tool_env(**GIT_IDENTITY)
    return subprocess.run(["git", *args], cwd=project, env=env, capture_output=True, text=True, check=True).stdout


_INTERRUPTED = False


def pytest_keyboard_interrupt() -> None:
    """Remember a Ctrl-C: the session's teardown then stops the tiny study's build instead of waiting for it."""
    global _INTERRUPTED
    _INTERRUPTED = True


def _uses_tiny_study(item: pytest.Item) -> bool:
    return "tiny_study" in getattr(item, "fixturenames", ())


@pytest.fixture(scope="session", autouse=True)
def _warm_servers(tmp_path_factory):
    """The warm processes that `dvc repro` starts in tests (src/kdinterp/workflow/warm.py) keep their sockets in
    this session's (worker's) folder, and are stopped with the session."""
    from kdinterp.workflow.warm import stop_servers

    directory = Path(tempfile.mkdtemp(prefix="kdwarm-"))  # short: a socket's path has at most 107 bytes
    os.environ["KDINTERP_WARM_DIR"] = str(directory)
    yield directory
    stop_servers(directory)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _decode_cache(tmp_path_factory):
    """Decoded image folders (src/kdinterp/training/decode_cache.py) are cached in this session's folder, never in
    the user's ~/.cache."""
    directory = tmp_path_factory.mktemp("decoded")
    os.environ["KDINTERP_DECODE_CACHE"] = str(directory)
    return directory


@pytest.fixture(scope="session", autouse=True)
def _tiny_study_build(request: pytest.FixtureRequest, tmp_path_factory, _warm_servers, _decode_cache):
    """Starts the tiny study's build (tests/study_build.py) with the session, if a selected test reads it."""
    from tests.study_build import BackgroundStudy

    if not any(_uses_tiny_study(item) for item in request.session.items):
        yield None
        return
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):   # each worker's basetemp is popen-gwN/ under the session's
        shared = shared.parent
    build = BackgroundStudy.start(shared, tool_env())
    yield build
    if _INTERRUPTED or request.session.shouldfail or request.session.shouldstop:
        build.stop()
    else:   # a worker that is done waits for the build it started: the other worker may still need it
        try:
            build.wait()
        except RuntimeError:
            pass    # reported by the tests that read it
        finally:
            build.stop()


@pytest.fixture(scope="session")
def tiny_study(_tiny_study_build) -> Path:
    """tests/tiny_study.py's 2-seed study after one `dvc repro`, all committed. Tests that change files copy it
    (``tests.tiny_study.copy_study``); others read it in place, and may run while another test copies it."""
    try:
        return _tiny_study_build.wait()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that read the tiny study run last, so that its build (started with the session) runs beside the
    others (a stable sort: the order is otherwise kept, the same in every pytest-xdist worker)."""
    items.sort(key=_uses_tiny_study)
