"""A tiny copy of the study: this checkout's pipeline with 1-epoch width-4 models on a tiny concept world.

Used by the end-to-end and remote tests (``conftest.tiny_study``) and by ``scripts/container-check``,
which runs it inside the image::

    python -m tests.tiny_study DIR        # writes DIR: a git repository, data/ tracked by DVC, not yet run
    python -m tests.tiny_study --run DIR  # the same, then `dvc repro` and a commit of everything (the test fixture)

It has the repository's dvc.yaml, src/, profiles/, pretrained/, plots/ (the offline plots page), Makefile,
.gitignore, .dvcignore, .dvc/config (the cache rule and the placeholder remote), .dvc/plots (the plot templates)
and a params.yaml of 2 seeds; ``dvc repro`` takes a few
minutes on 2 cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY_WORLD = {"seed": 1, "image_size": 16, "probe_image_size": 32, "train_per_class": 8, "val_per_class": 4,
              "probe_images": 40, "object_types": 2, "subtypes_per_type": 2, "supersample": 1}
TINY_MODEL = {"model": {"arch": "resnet10", "width": 4, "small_input": True},
              "optim": {"epochs": 1, "batch_size": 16, "lr": 0.05}}
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@127.0.0.1", "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@127.0.0.1"}


def copy_checkout(root: Path) -> Path:
    """Copy what the pipeline needs from this checkout into ``root`` (created): dvc.yaml, params.yaml,
    src/, profiles/, plots/, pretrained/ (train_teacher's dependency), Makefile, .gitignore, .dvcignore. Returns ``root``."""
    root.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml", "Makefile", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, root)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("src", "profiles", "plots"):
        shutil.copytree(ROOT / name, root / name, ignore=ignore)
    (root / "pretrained").mkdir()
    shutil.copy(ROOT / "pretrained" / "README.md", root / "pretrained")
    return root


def init_project(root: Path, env: dict[str, str] | None = None) -> Path:
    """In ``root``: ``git init``, ``dvc init`` (with this checkout's .dvc/config and .dvc/plots), ``dvc add data``, one commit.

    Returns ``root``. Raises ``subprocess.CalledProcessError`` if git or dvc fails.
    """
    env = {**(env or os.environ), **GIT_IDENTITY}
    dvc = str(Path(sys.executable).parent / "dvc")
    for command in (["git", "init", "-q"], [dvc, "init", "-q"]):
        subprocess.run(command, cwd=root, env=env, check=True, capture_output=True)
    shutil.copy(ROOT / ".dvc" / "config", root / ".dvc" / "config")
    shutil.copytree(ROOT / ".dvc" / "plots", root / ".dvc" / "plots", dirs_exist_ok=True)
    for command in ([dvc, "add", "-q", "data"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "tiny study"]):
        subprocess.run(command, cwd=root, env=env, check=True, capture_output=True)
    return root


def use_tiny_recipe(params: dict, recipe: dict | None = None) -> dict:
    """Give the parameter mapping ``params`` the tiny student recipe (``recipe``, default ``TINY_MODEL``: one epoch),
    snapshots after epoch 1, and one control of ``init: snapshot`` (the first), at epoch 1 (the default's epochs
    are past a one-epoch recipe); the others are dropped, here and in ``instrument.controls.snapshots``.
    Returns ``params``, changed in place."""
    params["student_recipe"] = {**(recipe or TINY_MODEL), "snapshot_epochs": [1]}
    controls = params.get("controls", {})
    snapshots = [name for name, spec in controls.items() if spec and spec.get("init") == "snapshot"]
    for name in snapshots[1:]:
        del controls[name]
    if snapshots:
        controls[snapshots[0]]["epoch"] = 1
    if (params.get("instrument") or {}).get("controls"):
        params["instrument"]["controls"]["snapshots"] = snapshots[:1]
    return params


def tiny_params() -> dict:
    """The tiny study's params.yaml as a plain mapping: this checkout's, with the tiny world, models and 2 seeds."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["world"] = {**params["world"], **TINY_WORLD}
    params["data"].update(image_size=16, eval_batch_size=64)
    params["teachers"]["teacher"].update(TINY_MODEL)
    use_tiny_recipe(params)
    params["dissection"]["batch_size"] = 16
    params["seeds"] = params["control_seeds"] = [0, 1]
    # The shuffled-label student and the BatchNorm-recalibrated control run the same stages as scratch and
    # random_init (tests/test_controls.py covers their training); each adds ~9 stages, ~45 s, to every test run.
    params["trained_controls"] = {}
    del params["controls"]["random_init_bn"]
    params["instrument"]["controls"].update(shuffled=None, untrained_bn=None)
    return params


def make_tiny_study(root: Path, env: dict[str, str] | None = None) -> Path:
    """Write the tiny study into ``root`` (created): files, concept world, ``git init``, ``dvc init``, ``dvc add data``.

    Returns ``root``. Raises ``subprocess.CalledProcessError`` if git or dvc fails.
    """
    from kdinterp.core.config import from_mapping
    from kdinterp.core.params import WorldParams
    from kdinterp.world.generate import generate_world

    copy_checkout(root)
    params = tiny_params()
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    generate_world(from_mapping(WorldParams, params["world"], "world"), root / "data" / "concept_world",
                   workers=1, progress=False)
    return init_project(root, env)


def run_tiny_study(root: Path, env: dict[str, str] | None = None) -> Path:
    """:func:`make_tiny_study` into ``root``, then ``dvc repro`` and one commit of everything (the state the tests read).

    Returns ``root``. Raises ``subprocess.CalledProcessError`` (with DVC's output) if git or dvc fails.
    """
    env = {**(env or os.environ), **GIT_IDENTITY}
    make_tiny_study(root, env)
    dvc = str(Path(sys.executable).parent / "dvc")
    for command in ([dvc, "repro"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "tiny study, run"]):
        subprocess.run(command, cwd=root, env=env, check=True)
    return root


def copy_study(source: Path, target: Path) -> Path:
    """Copy the study ``source`` to ``target`` (created), without DVC's process locks (``.dvc/tmp/lock``,
    ``.dvc/tmp/rwlock``): another test may hold them in ``source`` while it is copied. Returns ``target``."""
    locks = shutil.ignore_patterns("lock", "rwlock", "rwlock.lock")
    return Path(shutil.copytree(source, target, symlinks=True,
                                ignore=lambda folder, names: locks(folder, names) if Path(folder).parts[-2:] == (".dvc", "tmp")
                                else ()))


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["--run"] and len(arguments) == 2:
        print(run_tiny_study(Path(arguments[1])))
    elif len(arguments) == 1 and not arguments[0].startswith("-"):
        print(make_tiny_study(Path(arguments[0])))
    else:
        sys.exit("usage: python -m tests.tiny_study [--run] DIR")
