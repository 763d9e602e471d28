"""The reviewer's path: publish the study to a DVC remote, pull it into a fresh clone, rerun nothing.

Every server here listens on 127.0.0.1 only and is started and stopped by these tests: an
S3-compatible store (moto's ThreadedMotoServer) and a read-only HTTP remote (``http.server`` over a
local directory). The study is conftest's tiny 2-seed study; `kdinterp publish` / `kdinterp pull`
are what `make publish` / `make pull` run.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from kdinterp.workflow.remote import PLACEHOLDER, RemoteError, check, url_is_set
from tests.conftest import BIN, git, run_dvc, tool_env
from tests.tiny_study import copy_study

ROOT = Path(__file__).resolve().parents[1]

BUCKET = "kdinterp-test"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _env() -> dict[str, str]:
    return tool_env(**CREDENTIALS)


def _kdinterp(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "kdinterp"), *args], cwd=project, env=_env(), capture_output=True, text=True)


def _dvc(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_dvc(project, *args, check=check, env=_env())


def _use_s3(project: Path, endpoint: str, prefix: str) -> None:
    """Point the committed default remote `storage` at the loopback bucket, as a user would (config.local)."""
    _dvc(project, "remote", "modify", "--local", "storage", "url", f"s3://{BUCKET}/{prefix}")
    _dvc(project, "remote", "modify", "--local", "storage", "endpointurl", endpoint)


def _clone(source: Path, target: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(source), str(target)], check=True, capture_output=True)
    return target


def _files(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its modification time, but git's and DVC's own state (.git, .dvc/tmp)."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[:1] != (".git",)
            and p.relative_to(root).parts[:2] != (".dvc", "tmp")}


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on 127.0.0.1 with an empty bucket; stopped after the module."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint, **_boto_credentials()).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


def _boto_credentials() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


@pytest.fixture(scope="module")
def published(tiny_study: Path, s3_endpoint: str, tmp_path_factory) -> Path:
    """A clone of the tiny study (with its outputs) that `kdinterp publish` pushed to s3://BUCKET/study."""
    origin = copy_study(tiny_study, tmp_path_factory.mktemp("origin") / "study")
    _use_s3(origin, s3_endpoint, "study")
    done = _kdinterp(origin, "publish")
    assert done.returncode == 0, done.stderr
    assert "lists nothing" in done.stdout
    return origin


@pytest.mark.slow
def test_publish_then_pull_into_a_fresh_clone_reruns_no_stage(published: Path, s3_endpoint: str,
                                                                tmp_path: Path) -> None:
    fresh = _clone(published, tmp_path / "fresh")
    assert not (fresh / "outputs" / "models").exists() and not (fresh / "data").exists()
    assert (fresh / "outputs" / "evaluation" / "kd-1" / "metrics.json").is_file()  # committed: small outputs live in git
    _use_s3(fresh, s3_endpoint, "study")

    pulled = _kdinterp(fresh, "pull")
    assert pulled.returncode == 0, pulled.stderr
    assert "nothing to run" in pulled.stdout
    repro = _dvc(fresh, "repro")
    assert "Running stage" not in repro.stdout and "Data and pipelines are up to date." in repro.stdout
    assert "Data and pipelines are up to date." in _dvc(fresh, "status").stdout
    assert not (fresh / "outputs" / "checkpoints").exists()  # resume state is not needed to be up to date

    from kdinterp.core import study
    from kdinterp.measures.registry import load_params
    from kdinterp.training.models import load_model

    shown = _dvc(fresh, "metrics", "show").stdout
    layout = study.Layout()
    every = study.models(load_params(fresh / "params.yaml"))
    assert all(str(layout.headline(m)) in shown for m in every)  # the headline metrics, one row per model
    plots = _dvc(fresh, "plots", "show", "--json").stdout
    # the top-level plots read the figures stage's tables (every trained model's history is in training.csv)
    assert all(str(layout.plot_table(name)) in plots for name in study.PLOT_TABLES)
    net, header = load_model(fresh / layout.model_file(every[1]))  # safetensors: weights only, never unpickled
    assert header["model"]["arch"] == "resnet10" and not net.training

    committed = {p.name: p.read_bytes() for p in (fresh / "paper_figures").iterdir()}
    _dvc(fresh, "repro", "--force", "--single-item", "figures")
    assert {p.name: p.read_bytes() for p in (fresh / "paper_figures").iterdir()} == committed


@pytest.mark.slow
def test_read_only_http_remote_pulls_and_refuses_a_push(published: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    _dvc(published, "remote", "add", "--local", "files", str(store))
    _dvc(published, "push", "--remote", "files")
    handler = functools.partial(_QuietHandler, directory=str(store))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        fresh = _clone(published, tmp_path / "fresh")
        _dvc(fresh, "remote", "add", "--local", "web", url)
        pulled = _kdinterp(fresh, "pull", "--remote", "web")
        assert pulled.returncode == 0, pulled.stderr
        assert "Running stage" not in _dvc(fresh, "repro").stdout

        (fresh / "notes.txt").write_text("a file the read-only remote does not have\n")
        _dvc(fresh, "add", "-q", "notes.txt")
        pushed = _kdinterp(fresh, "publish", "--remote", "web")
        assert pushed.returncode != 0
        lines = pushed.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in pushed.stderr, pushed.stderr
        assert f"pushing to remote 'web' ({url}) failed" in lines[0]
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """http.server's static files (GET, HEAD; anything else is refused), without request logs."""

    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow
def test_unreachable_remote_fails_within_ten_seconds_and_changes_nothing(published: Path, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    fresh = _clone(published, tmp_path / "fresh")
    _use_s3(fresh, closed, "study")
    before = _files(fresh)
    began = time.perf_counter()
    done = _kdinterp(fresh, "pull")
    elapsed = time.perf_counter() - began
    assert done.returncode != 0 and elapsed < 10, (elapsed, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"remote 'storage' (s3://{BUCKET}/study)" in lines[0]
    assert "dvc remote modify --local storage url" in lines[0]
    assert _files(fresh) == before


@pytest.fixture
def bare_project(tmp_path: Path) -> Path:
    """An empty DVC project with the repository's committed .dvc/config (the placeholder remote)."""
    git(tmp_path, "init", "-q")
    _dvc(tmp_path, "init", "-q")
    shutil.copy(ROOT / ".dvc" / "config", tmp_path / ".dvc" / "config")
    return tmp_path


def test_placeholder_url_is_refused_with_the_fix(bare_project: Path) -> None:
    done = _kdinterp(bare_project, "pull")
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"placeholder URL {PLACEHOLDER}" in done.stderr
    assert "dvc remote modify --local storage url" in done.stderr
    skipped = _kdinterp(bare_project, "pull", "--if-set")  # the container's default command
    assert skipped.returncode == 0 and "not pulling" in skipped.stdout


def test_unknown_remote_is_named(bare_project: Path) -> None:
    with pytest.raises(RemoteError, match="no DVC remote named 'nope' \\(configured: storage\\)"):
        check(bare_project, "nope")
    assert not url_is_set(bare_project)


@pytest.mark.slow
def test_corrupted_object_in_the_remote_is_refused_and_never_checked_out(published: Path, s3_endpoint: str,
                                                                          tmp_path: Path) -> None:
    import boto3

    origin = Path(shutil.copytree(published, tmp_path / "origin", symlinks=True))
    _use_s3(origin, s3_endpoint, "corrupt")
    assert _kdinterp(origin, "publish").returncode == 0
    model = "outputs/models/students/scratch-0.safetensors"
    lock = yaml.safe_load((origin / "dvc.lock").read_text())
    md5 = lock["stages"]["train_student@scratch-0"]["outs"][0]["md5"]
    assert lock["stages"]["train_student@scratch-0"]["outs"][0]["path"] == model
    client = boto3.client("s3", endpoint_url=s3_endpoint, **_boto_credentials())
    client.put_object(Bucket=BUCKET, Key=f"corrupt/files/md5/{md5[:2]}/{md5[2:]}", Body=b"not the weights")

    fresh = _clone(origin, tmp_path / "fresh")
    _use_s3(fresh, s3_endpoint, "corrupt")
    done = _kdinterp(fresh, "pull")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "pulling from remote 'storage'" in done.stderr, done.stderr
    assert not (fresh / model).exists()
